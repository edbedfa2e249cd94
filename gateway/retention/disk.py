"""Disk watch: free space beside a SQLite store, against a floor below which the gateway
stops taking webhooks (503: senders retry) before the disk is full.

The probe is `shutil.disk_usage` unless one is injected (tests); a reading is reused for a
second, so the ingest path pays one `statvfs` a second at most.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from gateway.errors import DiskBelowFloor

Probe = Callable[[Path], int]
"""Free bytes on the file system holding a path."""
FRESH = 1.0  # seconds a reading is reused
__all__ = ["DiskBelowFloor", "DiskWatch", "Probe", "free_bytes"]


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


class DiskWatch:
    """Free space at `path` against `floor` bytes (0: no floor)."""

    def __init__(
        self,
        path: Path,
        floor: int,
        probe: Probe = free_bytes,
        on_reading: Callable[[int, bool], None] | None = None,
    ) -> None:
        self.path = path
        self.floor = floor
        self.probe = probe
        self.on_reading = on_reading
        self._free = -1
        self._read_at = float("-inf")

    @classmethod
    def for_store(
        cls,
        store_url: str,
        floor: int,
        probe: Probe = free_bytes,
        on_reading: Callable[[int, bool], None] | None = None,
    ) -> DiskWatch | None:
        """The watch for a SQLite store's folder; None for PostgreSQL (its server watches
        its own disk: see docs/operations.md)."""
        prefix = "sqlite:///"
        if not store_url.startswith(prefix):
            return None
        return cls(Path(store_url[len(prefix) :]).parent, floor, probe, on_reading)

    def free(self) -> int:
        now = time.monotonic()
        if now - self._read_at >= FRESH:
            self._free = self.probe(self.path)
            self._read_at = now
            if self.on_reading is not None:
                self.on_reading(self._free, self.low_at(self._free))
        return self._free

    def low_at(self, free: int) -> bool:
        return self.floor > 0 and free < self.floor

    @property
    def low(self) -> bool:
        return self.low_at(self.free())

    def check(self) -> None:
        """Raise `DiskBelowFloor` if free space is under the floor."""
        free = self.free()
        if self.low_at(free):
            raise DiskBelowFloor(free, self.floor)
