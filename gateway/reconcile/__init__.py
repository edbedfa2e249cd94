"""Reconciliation: ask each provider what it sent, and store (or have it resend) what is missing.

`reconcile` runs one source once; the scheduler runs it each period, `gateway backfill` on
demand. One reconciler per provider (`RECONCILERS`), as one provider class per sender.
"""

from __future__ import annotations

from gateway.reconcile import github, stripe
from gateway.reconcile.api import ProviderApiError, rate_limit_wait
from gateway.reconcile.base import RECONCILERS, Reconciler, Tally
from gateway.reconcile.service import period_of, reconcile, reconciled_sources, start_of

# The built-in reconcilers, registered by being imported.
BUILT_IN = (github.GitHubReconciler, stripe.StripeReconciler)

__all__ = [
    "BUILT_IN",
    "RECONCILERS",
    "ProviderApiError",
    "Reconciler",
    "Tally",
    "period_of",
    "rate_limit_wait",
    "reconcile",
    "reconciled_sources",
    "start_of",
]
