"""A new delivery of a payload, for `gateway send --new-id`: the same event sent again, but as
a new event, whatever the provider takes as its key (a signed id header, an id in the body, or
the body itself).

Each change is tried in turn and kept once the provider's own `dedup_key` says the delivery is
new: a fresh id in every delivery-id header, then a fresh value for the body's id field, then
a `gateway_send_id` field added to the body (senders that key on the whole body).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from gateway.errors import NoNewDelivery
from gateway.ingest.provider import Provider

__all__ = ["NoNewDelivery", "new_delivery"]

# Headers senders put their delivery id in (lower case), from docs/providers.md's table.
DELIVERY_HEADERS = frozenset(
    {
        "x-shopify-event-id",
        "x-shopify-webhook-id",
        "x-github-delivery",
        "x-gitlab-event-uuid",
        "idempotency-key",
        "x-wc-webhook-delivery-id",
        "x-zendesk-webhook-invocation-id",
        "webhook-id",
        "svix-id",
    }
)
# Where a body carries the sender's id for the event: Stripe, Intercom, CircleCI, Zendesk
# (`id`), Slack (`event_id`), PagerDuty (`event.id`), Jenkins (the build number).
BODY_IDS: tuple[tuple[str, ...], ...] = (
    ("id",),
    ("event_id",),
    ("event", "id"),
    ("build", "number"),
)
ADDED_FIELD = "gateway_send_id"

Sign = Callable[[bytes, dict[str, str]], dict[str, str]]


def new_delivery(
    provider: Provider, body: bytes, headers: dict[str, str], sign: Sign
) -> tuple[bytes, dict[str, str]]:
    """`body` and `headers` changed so that `provider` stores them as a new event; `sign` gives
    the signed headers of a body (the check runs on what would be sent)."""
    before = _key(provider, body, sign(body, headers))
    fresh = uuid.uuid4().hex
    for candidate_body, candidate_headers in _candidates(body, headers, fresh):
        after = _key(provider, candidate_body, sign(candidate_body, candidate_headers))
        if after != before:
            return candidate_body, candidate_headers
    raise NoNewDelivery(
        f"provider {provider.name}: no new delivery id can be made for this payload; "
        "change the body instead"
    )


def _candidates(
    body: bytes, headers: dict[str, str], fresh: str
) -> Iterator[tuple[bytes, dict[str, str]]]:
    renamed = {
        name: (f"msg_{fresh}" if name.lower() in ("webhook-id", "svix-id") else fresh)
        if name.lower() in DELIVERY_HEADERS
        else value
        for name, value in headers.items()
    }
    yield body, renamed
    try:
        payload = json.loads(body)
    except ValueError:
        return
    if not isinstance(payload, dict):
        return
    for path in BODY_IDS:
        changed = _with_new_id(payload, path, fresh)
        if changed is not None:
            yield json.dumps(changed).encode(), renamed
    yield json.dumps({**payload, ADDED_FIELD: fresh}).encode(), renamed


def _with_new_id(payload: dict[str, Any], path: tuple[str, ...], fresh: str) -> Any:
    """A copy of `payload` with the id at `path` replaced (a number by a number), or None."""
    copy = json.loads(json.dumps(payload))
    holder = copy
    for part in path[:-1]:
        holder = holder.get(part) if isinstance(holder, dict) else None
    if not isinstance(holder, dict) or path[-1] not in holder:
        return None
    old = holder[path[-1]]
    if isinstance(old, int) and not isinstance(old, bool):
        holder[path[-1]] = int(time.time_ns() % 10**15)
    elif isinstance(old, str):
        prefix = old.split("_", 1)[0] + "_" if "_" in old else ""
        holder[path[-1]] = prefix + fresh
    else:
        return None
    return copy


def _key(provider: Provider, body: bytes, headers: dict[str, str]) -> str:
    lower = {name.lower(): value for name, value in headers.items()}
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    return provider.dedup_key(lower, payload, body)
