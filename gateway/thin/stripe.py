"""Stripe thin events ("event notifications" of event destinations, `"object": "v2.core.event"`):
their related object, or the full event when none is named, fetched through the `stripe` library.

The library runs on the gateway's own HTTP stack (`httpx2`, asynchronously) and does not retry
by itself: retries are the worker's, journaled and visible (`gateway.thin.fetching`).
"""

from __future__ import annotations

from typing import Any

import httpx2
import stripe

from gateway.backoff import retry_after
from gateway.errors import FetchError
from gateway.ingest.providers.stripe import THIN_EVENT_OBJECT, StripeSettings
from gateway.store import Event
from gateway.thin.fetcher import FETCH_TIMEOUT_SECONDS, bounded, retryable


class StripeFetcher:
    """Fetches a Stripe source's thin events with its `api_key`, from its `api_base`."""

    def __init__(self, settings: StripeSettings) -> None:
        assert settings.api_key is not None  # StripeSettings requires one with `fetch`
        # stripe's HTTPXClient on httpx2, which speaks httpx's API (`_lib` picks the module).
        self._http = stripe.HTTPXClient(timeout=FETCH_TIMEOUT_SECONDS, _lib=httpx2)
        self.client = stripe.StripeClient(
            settings.api_key,
            base_addresses={"api": settings.api_base.rstrip("/")},
            max_network_retries=0,
            http_client=self._http,
        )

    def is_thin(self, payload: Any) -> bool:
        return isinstance(payload, dict) and payload.get("object") == THIN_EVENT_OBJECT

    async def fetch(self, event: Event) -> Any:
        try:
            # Verified at ingest already: the body is what Stripe signed.
            # One class per event type, some with a related object: read as the union's members.
            notification: Any = self.client.parse_event_notification_without_verification(
                event.body
            )
            if getattr(notification, "related_object", None) is not None:
                found = await notification.fetch_related_object_async()
            else:
                found = await notification.fetch_event_async()
        except stripe.StripeError as exc:
            raise _fetch_error(event.id, exc) from exc
        except (ValueError, KeyError) as exc:  # not a thin event the library can read
            raise FetchError(event.id, f"not a Stripe thin event: {exc}", retryable=False) from exc
        return bounded(event.id, found.to_dict(recursive=True, for_json=True))

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]


def _fetch_error(event_id: int, exc: stripe.StripeError) -> FetchError:
    status = exc.http_status
    headers = {str(k).lower(): str(v) for k, v in (exc.headers or {}).items()}
    where = f"Stripe answered {status}" if status is not None else "Stripe could not be reached"
    message = exc.user_message or type(exc).__name__
    return FetchError(
        event_id,
        f"{where}: {message}",
        retryable=retryable(status),
        retry_after=retry_after(headers),
    )
