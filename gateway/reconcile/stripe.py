"""Stripe: list the account's events created since the last run and store the missing ones.

Through the `stripe` library (blocking: each page is fetched on a thread). Pages are taken as
its `auto_paging_iter` takes them (`starting_after` the last id of a page while `has_more`),
one call per page, so a 429 retries that page through the project's `Retry-After` parser
rather than the library's own. Every event is stored under its `id`, the key its webhook
deliveries are deduplicated by: a later real delivery of it is a duplicate.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from gateway.reconcile.api import ProviderApiError, ProviderBusy, patiently, rate_limit_wait
from gateway.reconcile.base import Reconciler, Tally
from gateway.reconcile_config import StripeReconcile

if TYPE_CHECKING:
    import stripe

# Events per page: Stripe's largest.
PAGE_SIZE = 100
# Seconds one API call may take, whole; then it is tried again (the library's own timeout,
# per read, ends the abandoned thread's call).
CALL_TIMEOUT = 30


class StripeReconciler(Reconciler):
    provider = "stripe"
    settings: StripeReconcile

    async def run(self, since: datetime, tally: Tally) -> None:
        # Imported here: the library (and `requests` under it) costs memory in every gateway,
        # and only a Stripe source that reconciles uses it.
        import stripe

        base = {"api": self.settings.api_base} if self.settings.api_base else {}
        client = stripe.StripeClient(
            self.settings.api_key,
            base_addresses=base,  # type: ignore[arg-type]
            # Retries are ours (`patiently`): one Retry-After parser for the whole gateway.
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=CALL_TIMEOUT),
        )
        params: dict[str, Any] = {"created": {"gt": int(since.timestamp())}, "limit": PAGE_SIZE}
        if self.settings.failed_only:
            params["delivery_success"] = False
        while True:
            page = await self._page(client, params)
            events = list(page.get("data") or [])
            for event in events:
                tally.found += 1
                tally.saw(datetime.fromtimestamp(int(event.get("created") or 0), UTC))
                body = orjson.dumps(event)
                if await self.keep({}, body, event, datetime.now(UTC)):
                    tally.missing += 1
                    tally.stored += 1
            if not page.get("has_more") or not events:
                return
            params = {**params, "starting_after": events[-1]["id"]}

    async def _page(self, client: stripe.StripeClient, params: dict[str, Any]) -> dict[str, Any]:
        """One page of `GET /v1/events`, as the JSON Stripe sent (events exactly as listed)."""

        def fetch() -> dict[str, Any]:
            page = client.v1.events.list(params=params)  # type: ignore[arg-type]
            response = page.last_response
            if response is None:  # pragma: no cover - the library always keeps it
                raise ProviderApiError("Stripe's answer kept no response")
            data = response.data
            if not isinstance(data, dict):
                raise ProviderApiError(f"Stripe answered the events list with {data!r:.100}")
            return data

        async def once() -> dict[str, Any]:
            import stripe

            try:
                return await asyncio.wait_for(asyncio.to_thread(fetch), CALL_TIMEOUT)
            except TimeoutError:
                raise ProviderBusy(0, None, f"no answer within {CALL_TIMEOUT} s") from None
            except stripe.RateLimitError as exc:
                headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
                raise ProviderBusy(
                    429, rate_limit_wait(429, headers, time.time()), str(exc)
                ) from None
            except stripe.APIConnectionError as exc:
                raise ProviderBusy(0, None, f"cannot reach Stripe: {exc}") from None
            except stripe.StripeError as exc:
                status = exc.http_status
                if status is not None and status >= 500:
                    raise ProviderBusy(status, None, f"Stripe answered {status}") from None
                raise ProviderApiError(f"Stripe refused the events list: {exc}", status) from None

        return await patiently(
            once,
            what="Stripe GET /v1/events",
            max_tries=self.settings.max_tries,
            max_wait=self.settings.max_wait,
            sleep=self.sleep,
        )
