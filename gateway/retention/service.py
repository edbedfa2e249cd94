"""Retention in a running gateway: the pruning job (in the scheduler role), the disk watch
(ingest and /readyz), and their metrics. The `Gateway` runtime owns one.
"""

from __future__ import annotations

from gateway.config import Config
from gateway.metrics import Metrics
from gateway.retention.archive import open_archive
from gateway.retention.disk import DiskWatch, Probe, free_bytes
from gateway.retention.prune import Pruned, Pruner
from gateway.store import Store


class RetentionService:
    def __init__(
        self,
        config: Config,
        store: Store,
        metrics: Metrics,
        *,
        probe: Probe = free_bytes,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.disk = DiskWatch.for_store(
            config.store_url, config.retention.min_free_bytes, probe, self._reading
        )
        self.pruner: Pruner | None = None

    def _reading(self, free: int, low: bool) -> None:
        self.metrics.disk_free.set(free)
        self.metrics.disk_low.set(1 if low else 0)

    def _pruned(self, pruned: Pruned) -> None:
        for kind, count in pruned.as_dict().items():
            self.metrics.pruned.labels(kind).inc(count)

    def start(self, *, prune: bool) -> None:
        """Start the pruning job if `prune` (the scheduler role) and retention is enabled."""
        settings, config = self.config.retention, self.config
        if prune and settings.enabled and self.pruner is None:
            archive = open_archive(settings.archive, config.base_dir, settings.archive_endpoint)
            self.pruner = Pruner(self.store, settings, archive=archive, on_pruned=self._pruned)
            self.pruner.start()

    async def stop(self) -> None:
        if self.pruner is not None:
            await self.pruner.stop()
            self.pruner = None

    def unready(self) -> str | None:
        """Why this replica must not take webhooks now (the disk floor), or None."""
        if self.disk is not None and self.disk.low:
            return f"free disk space below the floor of {self.disk.floor} bytes"
        return None

    async def describe(self) -> str:
        """One line for the dashboard: the store's size, free disk space and the floor."""
        line = f"store {_size(await self.store.retention.size())}"
        if self.disk is not None:
            free = self.disk.free()
            line += f", {_size(free)} free on its disk"
            if self.disk.floor:
                line += f" (webhooks refused below {_size(self.disk.floor)})"
                if self.disk.low_at(free):
                    line += ": BELOW THE FLOOR, webhooks are answered 503"
        return line

    async def observe(self) -> None:
        """Bring the store-size and disk gauges up to date (for /metrics)."""
        if self.disk is not None:
            self.disk.free()
        self.metrics.store_bytes.set(await self.store.retention.size())


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
