#!/usr/bin/env python3
"""Two writers on one SQLite file: SQLite's busy handler against the gateway's write gate.

The door commits batches of 5 rows of 7 KB back to back, as the event writer does under a
stream of posts; the journal commits 3 small rows with 0.5 ms of other work between
commits, as the worker's journal does. Both in their own process, on one WAL file with
`synchronous=FULL` and `busy_timeout` as the store sets them. `busy`: each writer begins
IMMEDIATE and, finding the lock taken, waits in SQLite's busy handler (it sleeps 1, 2, 5 ...
up to 100 ms between tries). `gate`: each also holds `gateway.store.write_gate.WriteGate`
around its transaction (flock: woken when the holder lets go). Reports each writer's commits
per second and commit latency (p50, p99, max), and the journal's commits under the gate
against under the busy handler in the same run (target: no writer starved, ratio > 1).

Usage:  bench/writers [--quick] [--seconds 5] [--rounds 2] [--json FILE]
        (re-executes itself under the repo's .venv python)
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Arguments, ensure_venv, write_json

ensure_venv(__file__)

from gateway.store.write_gate import WriteGate  # noqa: E402

DOOR_ROWS, JOURNAL_ROWS = 5, 3
DOOR_BODY, JOURNAL_BODY = b"x" * 7000, b"y" * 100
JOURNAL_PAUSE = 0.0005


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=10000")
    return db


def writer(
    path: str, kind: str, gated: bool, seconds: float, out: multiprocessing.Queue[Any]
) -> None:
    db, gate = connect(path), WriteGate(path)
    rows, body = (DOOR_ROWS, DOOR_BODY) if kind == "door" else (JOURNAL_ROWS, JOURNAL_BODY)
    latencies: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        if gated:
            with gate.held():
                commit(db, kind, rows, body)
        else:
            commit(db, kind, rows, body)
        latencies.append(time.perf_counter() - started)
        if kind == "journal":
            time.sleep(JOURNAL_PAUSE)
    gate.close()
    latencies.sort()
    out.put(
        {
            "writer": kind,
            "commits_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
            "max_ms": round(latencies[-1] * 1000, 2),
        }
    )


def commit(db: sqlite3.Connection, kind: str, rows: int, body: bytes) -> None:
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO t (kind, body) VALUES (?, ?)", [(kind, body)] * rows)
    db.execute("COMMIT")


def measure(folder: Path, mode: str, seconds: float) -> dict[str, dict[str, Any]]:
    path = str(folder / f"{mode}-{time.monotonic_ns()}.db")
    db = connect(path)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, kind TEXT, body BLOB)")
    db.close()
    context = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[Any] = context.Queue()
    processes = [
        context.Process(target=writer, args=(path, kind, mode == "gate", seconds, out))
        for kind in ("door", "journal")
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=seconds + 60) for _ in processes]
    for process in processes:
        process.join()
    return {result["writer"]: result for result in results}


def main() -> int:
    parser = Arguments(__doc__, quick={"seconds": 2, "rounds": 1})
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse()
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-writers-") as folder:
        for round_ in range(1, args.rounds + 1):
            measured = {
                mode: measure(Path(folder), mode, args.seconds) for mode in ("busy", "gate")
            }
            for mode, writers in measured.items():
                for kind in ("door", "journal"):
                    w = writers[kind]
                    print(
                        f"round {round_} {mode:4} {kind:7} {w['commits_per_s']:8.1f} commits/s  "
                        f"p50 {w['p50_ms']:.2f} ms  p99 {w['p99_ms']:.2f} ms  "
                        f"max {w['max_ms']:.1f} ms"
                    )
            ratio = measured["gate"]["journal"]["commits_per_s"] / max(
                measured["busy"]["journal"]["commits_per_s"], 0.1
            )
            print(f"round {round_} journal commits, gate / busy handler: {ratio:.1f}x")
            figures.append({"round": round_, **measured, "journal_gate_over_busy": round(ratio, 2)})
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
