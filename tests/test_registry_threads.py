"""A registry read first by many threads at once: each waits for the one loading it.

tests/test_crash.py's clients sign their first orders together, in a fresh process; before the
registry had a lock, all but the loading thread could find it empty (`KeyError: 'shopify'`).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import threading
from gateway import plugins

providers = plugins.registry(plugins.PROVIDERS)
start = threading.Barrier(16)
found, failed = [], []

def read():
    start.wait()
    try:
        found.append(providers["shopify"].name)
    except KeyError as exc:
        failed.append(repr(exc))

threads = [threading.Thread(target=read) for _ in range(16)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len(found), failed)
"""


def test_threads_reading_a_registry_first_all_find_what_it_registers() -> None:
    for _ in range(3):  # a race: a fresh interpreter each time
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(SCRIPT)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split() == ["16", "[]"]
