"""GitHub: list a hook's deliveries (newest first, by cursor) and recover the failed ones.

A failed delivery whose `guid` is not stored is either redelivered by GitHub (`POST
.../deliveries/{id}/attempts`, the default: it comes back through the signed path) or, in
`mode: fetch`, read (`GET .../deliveries/{id}`) and its request stored as received.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gateway.errors import SignatureInvalid
from gateway.reconcile.api import ProviderApiError, ProviderBusy, patiently, rate_limit_wait
from gateway.reconcile.base import Reconciler, Tally, log
from gateway.reconcile_config import GitHubReconcile

if TYPE_CHECKING:
    import httpx2

API = "https://api.github.com"
# Deliveries per page: GitHub's largest.
PAGE_SIZE = 100
# Redeliveries of one guid within a run's window after which it is not asked again.
MAX_REDELIVERIES = 3
# Seconds one API call may take, whole (connect, send, every read); then it is tried again.
CALL_TIMEOUT = 30.0


@dataclass
class Seen:
    """What a run saw of one guid."""

    delivery: dict[str, Any]  # its newest attempt
    delivered: bool = False
    redeliveries: int = 0


class GitHubReconciler(Reconciler):
    provider = "github"
    settings: GitHubReconcile

    async def run(self, since: datetime, tally: Tally) -> None:
        import httpx2  # by a run: a gateway that reconciles nothing keeps it out of memory

        base = (self.settings.api_base or API).rstrip("/")
        headers = {
            "authorization": f"Bearer {self.settings.token}",
            "accept": "application/vnd.github+json",
            "x-github-api-version": "2022-11-28",
        }
        async with httpx2.AsyncClient(
            base_url=base + self.settings.hook_path, headers=headers, timeout=CALL_TIMEOUT
        ) as client:
            self.client = client
            latest = await self._latest_per_guid(since, tally)
            wanted = [
                seen.delivery
                for seen in latest.values()
                if not (seen.delivered and self.settings.failed_only) and not self._given_up(seen)
            ]
            stored = await self.store.reconciliations.stored_delivery_ids(
                self.name, (d["guid"] for d in wanted)
            )
            missing = [d for d in wanted if d["guid"] not in stored]
            tally.missing = len(missing)
            # Oldest first: the order the sender meant them in.
            for delivery in sorted(missing, key=lambda d: str(d.get("delivered_at"))):
                if self.settings.mode == "redeliver":
                    await self._call("POST", f"/deliveries/{delivery['id']}/attempts")
                    tally.redelivered += 1
                    if self.metrics is not None:
                        self.metrics.reconciled.labels(self.name).inc()
                    log.info("reconcile.redelivery_asked", source=self.name, guid=delivery["guid"])
                elif await self._fetch(delivery):
                    tally.stored += 1

    async def _latest_per_guid(self, since: datetime, tally: Tally) -> dict[str, Seen]:
        """Each guid delivered since `since`: its newest attempt, whether any attempt of it
        was delivered (a 2xx from the gateway), and how many were redeliveries."""
        latest: dict[str, Seen] = {}
        async for delivery in self._deliveries(since):
            tally.saw(_when(delivery))
            seen = latest.setdefault(str(delivery["guid"]), Seen(delivery))
            seen.delivered |= 200 <= int(delivery.get("status_code") or 0) < 300
            seen.redeliveries += bool(delivery.get("redelivery"))
        tally.found = len(latest)
        return latest

    def _given_up(self, seen: Seen) -> bool:
        """A delivery the gateway keeps refusing (a signature that never matches, a body over
        the limit) is not asked again for ever: after `MAX_REDELIVERIES` it is left, logged."""
        if self.settings.mode != "redeliver" or seen.redeliveries < MAX_REDELIVERIES:
            return False
        if not seen.delivered:
            log.warning("reconcile.redelivery_given_up", source=self.name,
                        guid=seen.delivery["guid"], redeliveries=seen.redeliveries)  # fmt: skip
        return True

    async def _deliveries(self, since: datetime) -> AsyncIterator[dict[str, Any]]:
        """The hook's deliveries from the newest back to `since`, page by page (Link: next)."""
        url: str | None = f"/deliveries?per_page={PAGE_SIZE}"
        while url is not None:
            response = await self._call("GET", url)
            page = response.json()
            if not isinstance(page, list):
                raise ProviderApiError(f"GitHub answered {url} with {type(page).__name__}")
            for delivery in page:
                if _when(delivery) < since:
                    return
                yield delivery
            url = response.links.get("next", {}).get("url")

    async def _fetch(self, delivery: dict[str, Any]) -> bool:
        """Store the request GitHub kept for `delivery`; True if it was not stored before."""
        response = await self._call("GET", f"/deliveries/{delivery['id']}")
        request = (response.json() or {}).get("request") or {}
        # The payload's bytes as the answer holds them, not parsed and serialised again: a
        # later real delivery of the same event then has the same bytes, so the same dedup key.
        shown = raw_member(response.text, "request", "payload")
        if request.get("payload") is None or shown is None:
            raise ProviderApiError(f"GitHub kept no request payload for delivery {delivery['id']}")
        headers = {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}
        headers.setdefault("x-github-delivery", str(delivery["guid"]))
        headers.setdefault("x-github-event", str(delivery.get("event") or "unknown"))
        body = shown.encode()
        try:
            # The signature tells whether these are the very bytes GitHub sent.
            self.sender.verify(headers, body, time.time())
        except SignatureInvalid:
            log.warning("reconcile.signature_mismatch", source=self.name, guid=delivery["guid"])
        # The payload as the answer's parse already has it: the same text, parsed once.
        return await self.keep(headers, body, request["payload"], datetime.now(UTC))

    async def _call(self, method: str, url: str) -> httpx2.Response:
        import httpx2

        async def once() -> httpx2.Response:
            try:
                async with asyncio.timeout(CALL_TIMEOUT):
                    response = await self.client.request(method, url)
            except TimeoutError:
                raise ProviderBusy(0, None, f"no answer within {CALL_TIMEOUT:g} s") from None
            except httpx2.TransportError as exc:
                raise ProviderBusy(0, None, f"{type(exc).__name__}: {exc}") from None
            status = response.status_code
            if status in (403, 429):
                wait = rate_limit_wait(status, response.headers, time.time())
                if wait is not None:
                    raise ProviderBusy(status, wait, f"rate limited ({status})")
            if status >= 500:
                raise ProviderBusy(status, None, f"GitHub answered {status}")
            if status >= 400:
                raise ProviderApiError(
                    f"GitHub answered {method} {url} with {status}: {response.text[:300]}", status
                )
            return response

        return await patiently(
            once,
            what=f"GitHub {method} {url}",
            max_tries=self.settings.max_tries,
            max_wait=self.settings.max_wait,
            sleep=self.sleep,
        )


_VALUE = json.JSONDecoder()


def raw_member(document: str, *path: str) -> str | None:
    """The text of the value at `path` (keys of nested objects) in the JSON `document`, as it
    is written there; None if it has no such member. A key given twice counts last, as in a
    parser. `document` must be valid JSON (read by a parser first)."""
    at = _past_space(document, 0)
    for key in path:
        if document[at : at + 1] != "{":
            return None
        found = None
        at = _past_space(document, at + 1)
        while document[at : at + 1] == '"':
            name, at = _VALUE.raw_decode(document, at)
            at = _past_space(document, _past_space(document, at) + 1)  # past the colon
            if name == key:
                found = at
            _, at = _VALUE.raw_decode(document, at)
            at = _past_space(document, at)
            if document[at : at + 1] == ",":
                at = _past_space(document, at + 1)
        if found is None:
            return None
        at = found
    _, end = _VALUE.raw_decode(document, at)
    return document[at:end]


def _past_space(document: str, at: int) -> int:
    while document[at : at + 1] in _SPACE:
        at += 1
    return at


_SPACE = frozenset(" \t\n\r")


def _when(delivery: dict[str, Any]) -> datetime:
    value = str(delivery.get("delivered_at") or "")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ProviderApiError(f"GitHub delivery has no valid delivered_at: {value!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
