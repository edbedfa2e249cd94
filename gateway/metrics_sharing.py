"""`gateway serve --processes N`: every process's metrics on the door's /metrics, through
prometheus-client's multiprocess mode (a file per process and metric kind, in one folder).

prometheus-client picks its mode when it is imported, from PROMETHEUS_MULTIPROC_DIR: `share`
must run before anything imports it (the metrics, the app).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

FOLDER = "PROMETHEUS_MULTIPROC_DIR"


def share() -> Path | None:
    """Switch prometheus-client to multiprocess mode in a new private folder (0700), and
    return it for `MetricsFolder` to remove; None if the environment already names one (the
    operator's, kept)."""
    if FOLDER in os.environ:
        return None
    if "prometheus_client" in sys.modules:
        raise RuntimeError(  # a plugin imported it: the operator can name the folder instead
            "prometheus_client was imported before --processes could choose its multiprocess "
            "mode; set PROMETHEUS_MULTIPROC_DIR to an empty folder of your own"
        )
    folder = Path(tempfile.mkdtemp(prefix="gateway-metrics-"))
    os.environ[FOLDER] = str(folder)
    # Also when serve stops before its workers start (the children leave by os._exit).
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def shared() -> bool:
    """Whether this process's metrics are kept in files for every process to read."""
    return FOLDER in os.environ


class MetricsFolder:
    """A companion of the door's gateway (after the worker processes): removes the private
    folder of metric files once they have all stopped."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def reload(self) -> None: ...

    def unready(self) -> str | None:
        return None
