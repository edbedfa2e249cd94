"""What `gateway serve` says before it listens: one line per thing it found wrong (and then it
does not start), else one line each for where it listens, the store, rules, sources and what
is switched on, and why not where something is off.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from gateway.config import Config
from gateway.insecure import shown_url
from gateway.rules.loader import RuleSet
from gateway.store.lock import WorkerAlreadyRunning, WorkerLock


def sqlite_path(config: Config) -> Path | None:
    """The SQLite database file of the store, or None (PostgreSQL, or in memory)."""
    prefix = "sqlite:///"
    url = config.store_url
    if not url.startswith(prefix) or url.endswith(":memory:"):
        return None
    return Path(url[len(prefix) :].split("?", 1)[0])


# What the worker processes (`--processes N`) run; the door keeps ingest.
BEHIND_THE_DOOR = frozenset({"worker", "scheduler"})


def split_roles(roles: frozenset[str], processes: int) -> tuple[frozenset[str], frozenset[str]]:
    """The roles of this process and of the worker processes (none with one process)."""
    if processes < 2:
        return roles, frozenset()
    return roles - BEHIND_THE_DOOR, roles & BEHIND_THE_DOOR


# Beyond `shutdown_grace`, how long the worker processes of a dead door may take to exit.
ORPHANS_EXIT_SECONDS = 5.0


def worker_lock(config: Config, behind: frozenset[str]) -> WorkerLock | None:
    """The SQLite worker lock the door takes for its worker processes (they inherit it), or
    None: PostgreSQL, or no worker among them."""
    database = sqlite_path(config)
    return WorkerLock(str(database)) if database is not None and "worker" in behind else None


def problems(config: Config, roles: Collection[str], *, processes: int = 1) -> list[str]:
    """What would make start-up fail with a traceback, found first and said in one line."""
    if processes > 1:
        door, behind = split_roles(frozenset(roles), processes)
        if "ingest" not in door or not behind:
            return [
                f"--processes {processes} runs ingest here and the worker and scheduler in "
                f"other processes; roles {', '.join(sorted(roles))} leave nothing to split"
            ]
        workers = processes - 1
        if workers > 1 and "worker" not in behind:
            return [f"--processes {processes}: more than one worker process needs the worker role"]
        if workers > config.worker.concurrency:
            return [
                f"--processes {processes}: worker.concurrency {config.worker.concurrency} is "
                f"split among {workers} worker processes; it must be at least {workers}"
            ]
    database = sqlite_path(config)
    if database is None:
        return []
    if not database.parent.is_dir():
        return [
            f"store {shown_url(config.store)}: the folder {database.parent} does not exist; "
            "create it, or change `store:` in the config"
        ]
    if "worker" in roles:
        lock = WorkerLock(str(database))
        try:
            # A dead door's worker processes finish their runs, then exit: follow them.
            lock.acquire(orphans_wait=config.shutdown_grace + ORPHANS_EXIT_SECONDS)
        except WorkerAlreadyRunning as exc:
            return [str(exc)]
        except OSError as exc:
            return [f"store {shown_url(config.store)}: cannot write beside it: {exc.strerror}"]
        lock.release()
    return []


def summary(
    config: Config, rules: RuleSet, roles: Collection[str], host: str, port: int
) -> list[str]:
    """One line each: address, store, rules, sources, and what is on or off (and why)."""
    api = "on" if config.admin_token else "off (no admin_token in the config)"
    scheduled = len(rules.scheduled)
    events = len(rules.rules) - scheduled
    return [
        f"serving on http://{host}:{port} (roles: {', '.join(sorted(roles))})",
        f"store: {shown_url(config.store_url)}",
        f"rules: {len(rules.rules)} from {config.rules_dir} ({events} on events, "
        f"{scheduled} scheduled)",
        f"sources: {', '.join(sorted(config.sources)) or 'none'} (POST /hooks/SOURCE)",
        f"admin API /api: {api}",
        f"dashboard /ui: {api}",
        "metrics /metrics, health /healthz and /readyz: on",
    ]
