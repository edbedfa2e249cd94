"""glibc tuning of `gateway serve` (gateway.allocator): the trimmer gives memory back once a busy
spell is over, never during one, and everything is a no-op where switched off or absent."""

from __future__ import annotations

import asyncio
import ctypes.util

import pytest

from gateway import allocator

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
