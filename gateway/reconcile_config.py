"""A source's `reconcile:` block: how often, with which credentials, in which mode.

Settings only, one model per provider that can reconcile; `gateway.reconcile` runs them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.retrying import Seconds

# GitHub keeps a hook's deliveries for 3 days; a first run (no earlier success) looks this far.
DEFAULT_LOOKBACK = 3 * 86400.0
# Tries of one API call answered 429/403-rate-limited or 5xx before the run fails.
DEFAULT_MAX_TRIES = 5
# The longest wait a `Retry-After` (or rate-limit reset) may ask for; longer fails the run,
# and the next period tries again, rather than holding a scheduler slot for an hour.
DEFAULT_MAX_WAIT = 60.0


class ReconcileSettings(BaseModel):
    """What every provider's `reconcile:` has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every: Seconds = Field(gt=0, description="the period between runs, e.g. 15m")
    # The provider's API root; set to a loopback server in tests, or a proxy.
    api_base: str | None = None
    # How far back a source's first run (and `gateway backfill` without --since) looks.
    lookback: Seconds = Field(DEFAULT_LOOKBACK, gt=0)
    max_tries: int = Field(DEFAULT_MAX_TRIES, ge=1, le=20)
    max_wait: Seconds = Field(DEFAULT_MAX_WAIT, ge=0)
    # Seconds of overlap with the previous run's window: late-listed events are not missed,
    # and what is seen twice is deduplicated by the store.
    overlap: Seconds = Field(60.0, ge=0)


class GitHubReconcile(ReconcileSettings):
    """`reconcile:` of a GitHub source: a repository's, an organisation's or the app's hook."""

    token: str = Field(min_length=1)
    repo: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    org: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    # The GitHub App's own webhook (`token` is then the app's JWT).
    app: bool = False
    hook_id: int | None = Field(None, ge=1)
    # redeliver: ask GitHub to send it again (through the signed path); fetch: store the
    # request GitHub kept, as received.
    mode: Literal["redeliver", "fetch"] = "redeliver"
    # Only deliveries GitHub marks failed; false: every delivery whose guid is not stored.
    failed_only: bool = True

    @model_validator(mode="after")
    def _one_hook(self) -> GitHubReconcile:
        owners = [name for name in ("repo", "org") if getattr(self, name)] + (
            ["app"] if self.app else []
        )
        if len(owners) != 1:
            raise ValueError("name exactly one of `repo`, `org` or `app: true`")
        if not self.app and self.hook_id is None:
            raise ValueError("`hook_id` is needed for a repository's or organisation's hook")
        return self

    @property
    def hook_path(self) -> str:
        """The hook's path under the API root."""
        if self.app:
            return "/app/hook"
        if self.repo:
            return f"/repos/{self.repo}/hooks/{self.hook_id}"
        return f"/orgs/{self.org}/hooks/{self.hook_id}"


class StripeReconcile(ReconcileSettings):
    """`reconcile:` of a Stripe source: list the account's events and store the missing."""

    api_key: str = Field(min_length=1)
    # Stripe has no redelivery API: its events are stored as listed.
    mode: Literal["fetch"] = "fetch"
    # Only events whose delivery to a webhook endpoint failed (`delivery_success=false`).
    failed_only: bool = False


# Provider name → its `reconcile:` model; `gateway.reconcile.RECONCILERS` has the same names.
SETTINGS: dict[str, type[ReconcileSettings]] = {
    "github": GitHubReconcile,
    "stripe": StripeReconcile,
}


def problems(provider: str, block: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Each problem of a `reconcile:` block, with the key it is at (under `reconcile`)."""
    model = SETTINGS.get(provider)
    if model is None:
        known = ", ".join(sorted(SETTINGS))
        return [((), f"provider {provider} cannot reconcile (those that can: {known})")]
    try:
        model.model_validate(block)
    except ValidationError as exc:
        return [(tuple(err["loc"]), err["msg"]) for err in exc.errors()]
    return []


def settings(provider: str, block: Any) -> ReconcileSettings:
    """The validated settings (call after `problems` found none)."""
    return SETTINGS[provider].model_validate(block)
