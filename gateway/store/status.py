"""The states of events, runs and steps, and the groups of them that decisions rest on.

`StrEnum`s: a member equals its text, so the stored rows and the JSON shown are that text.
Migrations keep their own frozen copies; records read back from the store hold plain text.
"""

from __future__ import annotations

from enum import StrEnum


class EventStatus(StrEnum):
    """An event's routing: waiting, or done (with runs, or matching no rule, or crashed: a bug
    in planning, logged as `event.route_failed`, must not leave the event pending for ever).

    A thin event is `fetching` while its full object is fetched (and retried), then pending
    again to be routed; `fetch_failed` once the retry horizon passed (an operator's replay
    fetches it anew)."""

    PENDING = "pending"
    FETCHING = "fetching"
    FETCH_FAILED = "fetch_failed"
    ROUTED = "routed"
    UNMATCHED = "unmatched"
    ERROR = "error"


# Events not routed yet, nor done with: waiting to be routed, fetching, or failed to fetch
# (retention keeps their bodies: they are work still to do).
UNROUTED = (EventStatus.PENDING, EventStatus.FETCHING, EventStatus.FETCH_FAILED)


class RunStatus(StrEnum):
    """pending → running → succeeded | failed | dead; pending again to retry after a backoff,
    waiting while a downstream it needs is failing (its circuit is open: `error` names it,
    `next_attempt_at` is the next try), or awaiting_approval until an operator decides."""

    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    """A tool call or model turn of a run: started (outcome unknown) until it ends."""

    STARTED = "started"
    SUCCEEDED = "succeeded"
    # Failed for good (the run fails, or the model hears of it).
    FAILED = "failed"
    # Failed in a way worth retrying: the run is retried later.
    ERROR = "error"
    SKIPPED = "skipped"
    SHADOWED = "shadowed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    # Calls an assistant proposed that were not made: not a tool, bad arguments, refused by
    # policy, or made already earlier in the run.
    INVALID = "invalid"
    REFUSED = "refused"
    DUPLICATE = "duplicate"


# A run in one of these states no longer holds back later runs with its ordering key. In this
# order: the partial index of migration 0003 spells the condition so (schema.UNFINISHED).
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.DEAD, RunStatus.CANCELLED)
# Steps of an action run that a resumed run does not take again: their result stands.
DONE = (StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.SHADOWED)
# Steps of an assistant run whose outcome is settled: their output is part of the conversation.
SETTLED = (
    StepStatus.SUCCEEDED,
    StepStatus.FAILED,
    StepStatus.INVALID,
    StepStatus.REFUSED,
    StepStatus.REJECTED,
    StepStatus.DUPLICATE,
    StepStatus.SHADOWED,
)


class ReconcileStatus(StrEnum):
    """A reconciliation run: running until it ends; `interrupted` when a later run of its
    source found it still running (its process died); only a `succeeded` one moves the cursor."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class ReceivedVia(StrEnum):
    """How an event came in: the sender delivered it, or reconciliation found it."""

    WEBHOOK = "webhook"
    RECONCILE = "reconcile"
