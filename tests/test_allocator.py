"""glibc tuning of `gateway serve` (gateway.allocator): the trimmer gives memory back once a busy
spell is over, never during one, and everything is a no-op where switched off or absent."""

from __future__ import annotations

import asyncio
import ctypes.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import allocator, collector

GLIBC = ctypes.util.find_library("c") == "libc.so.6"


def trims(shares: list[float]) -> list[bool]:
    """The trimmer's answer after each look, the process using `shares` of a core in turn."""
    trimmer = allocator.Trimmer()
    return [trimmer.quiet_after_busy(share) for share in shares]


def test_a_quiet_look_after_a_busy_spell_trims_once() -> None:
    assert trims([0.6, 0.9, 0.0, 0.0, 0.001]) == [False, False, True, False, False]


def test_a_gateway_under_load_or_always_idle_is_never_trimmed() -> None:
    assert trims([0.5] * 5) == [False] * 5
    assert trims([0.0, 0.002, 0.0] * 2) == [False] * 6


def test_each_busy_spell_is_followed_by_its_own_trim() -> None:
    assert trims([0.5, 0.0, 0.5, 0.0]) == [False, True, False, True]


def test_a_between_look_neither_ends_nor_starts_a_spell() -> None:
    # 3 % of a core: not busy (a timer, a health check), not quiet enough to call it over.
    assert trims([0.03, 0.0]) == [False, False]
    assert trims([0.5, 0.03, 0.0]) == [False, False, True]


async def test_the_running_trimmer_gives_back_after_the_process_went_quiet() -> None:
    spent = [0.0, 0.5, 0.5]  # CPU seconds per read: busy at first, then none at all
    clock = iter([sum(spent[: i + 1]) for i in range(len(spent))])
    given: list[int] = []

    def cpu_time() -> float:
        return next(clock, sum(spent))

    trimmer = allocator.Trimmer(
        look=0.01, cpu_time=cpu_time, give_back=lambda: bool(given.append(1))
    )
    trimmer.start()
    for _ in range(200):
        if given:
            break
        await asyncio.sleep(0.01)
    await trimmer.stop()
    assert given == [1] and trimmer.trims == 1


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc_trim and mallopt")
def test_on_glibc_arenas_are_capped_and_memory_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("GATEWAY_MALLOC_TUNING", raising=False)
    allocator._glibc.cache_clear()
    assert allocator.cap_arenas(8)  # glibc's default cap on this machine kind; harmless here
    allocator.trim()  # True or False (nothing to give back): it ran, which is the point


@pytest.mark.parametrize("switch", ["off", "0", "no"])
def test_gateway_malloc_tuning_off_turns_both_off(
    monkeypatch: pytest.MonkeyPatch, switch: str
) -> None:
    monkeypatch.setenv("GATEWAY_MALLOC_TUNING", switch)
    allocator._glibc.cache_clear()
    try:
        assert allocator.cap_arenas() is False
        assert allocator.trim() is False
    finally:
        monkeypatch.delenv("GATEWAY_MALLOC_TUNING")
        allocator._glibc.cache_clear()


def test_a_malloc_arena_max_in_the_environment_is_left_to_glibc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert allocator.cap_arenas() is False


SETTLED = """
import gc, json
from unittest import mock
import typer
from typer.testing import CliRunner
from gateway.cli import app
from gateway import server

# `gateway serve` as far as its server: it must have settled the collector by then.
seen = {}
def serve(*args, **kwargs):
    seen.update(frozen=gc.get_freeze_count(), threshold=list(gc.get_threshold()))
with mock.patch.object(server, "serve", serve):
    result = CliRunner().invoke(app, ["serve", "--config", CONFIG, "--no-migrate"])
assert result.exit_code == 0, result.output
print(json.dumps(seen))
"""


def test_gateway_serve_settles_the_collector_as_the_benches_do(tmp_path: Path) -> None:
    """What `gateway serve` does with Python's collector is `collector.settle`, which the
    in-process benches call too (bench/drain measured 7 % more CPU per run without it)."""
    config = tmp_path / "gateway.yaml"
    config.write_text(f"store: sqlite:///{tmp_path / 'gateway.db'}\nrules: {tmp_path / 'rules'}\n")
    (tmp_path / "rules").mkdir()
    settled = subprocess.run(
        [sys.executable, "-c", f"CONFIG = {str(config)!r}\n" + SETTLED],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert settled.returncode == 0, settled.stderr
    seen = json.loads(settled.stdout.strip().splitlines()[-1])
    assert seen["frozen"] > 10_000  # the modules loaded at start, out of every scan
    assert tuple(seen["threshold"]) == collector.THRESHOLDS
