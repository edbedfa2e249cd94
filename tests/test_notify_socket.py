"""Wake-ups between processes on one store: the one interface (`store.wake_ups()`) over both
transports, and the SQLite datagram transport's edges (no listener, a stale socket, two
listeners, a path too long for a socket address)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from gateway.store import Store
from gateway.store.notify_socket import SocketNotifier


async def woken_within(event: asyncio.Event, seconds: float = 5.0) -> bool:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def test_a_wake_up_from_one_process_reaches_the_others_listener(store_url: str) -> None:
    sending, listening = Store(store_url), Store(store_url)
    sender, listener = sending.wake_ups(), listening.wake_ups()
    assert sender is not None and listener is not None
    if isinstance(listener, SocketNotifier):  # one process plays both: two socket names
        listener.name = "listener.sock"
    woken = asyncio.Event()
    listener.start(woken.set)
    try:
        if hasattr(listener, "listening"):  # PostgreSQL: wait for LISTEN to be in place
            await asyncio.wait_for(listener.listening(), 5)
        await asyncio.sleep(0)
        woken.clear()  # starting wakes the callback once: work may have come before
        await sender.notify()
        assert await woken_within(woken)
    finally:
        await listener.stop()
        await sender.stop()
        await sending.engine.dispose()
        await listening.engine.dispose()


async def test_with_no_listener_notifying_neither_blocks_nor_raises(tmp_path: Path) -> None:
    door = SocketNotifier(str(tmp_path / "gateway.db"))
    door.notify_soon()  # no folder yet
    (tmp_path / "gateway.db.wake").mkdir()
    door.notify_soon()  # an empty folder
    await door.stop()


async def test_a_stale_socket_is_skipped_by_senders_and_removed_by_the_next_listener(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "gateway.db")
    folder = tmp_path / "gateway.db.wake"
    folder.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(folder / "999999.sock"))
    dead.close()  # a worker killed with -9 leaves its socket file behind
    door = SocketNotifier(database, name="door")
    door.notify_soon()  # refused by nobody: skipped, no error

    worker = SocketNotifier(database, name="worker")
    woken = asyncio.Event()
    worker.start(woken.set)
    try:
        assert sorted(p.name for p in folder.iterdir()) == ["worker.sock"]
        woken.clear()
        door.notify_soon()
        assert await woken_within(woken)
    finally:
        await worker.stop()
        await door.stop()
    assert list(folder.iterdir()) == [], "a stopped listener removes its socket"


async def test_every_listener_is_woken_and_none_by_its_own_wake_up(tmp_path: Path) -> None:
    database = str(tmp_path / "gateway.db")
    first, second = SocketNotifier(database, name="a"), SocketNotifier(database, name="b")
    woken = {"a": asyncio.Event(), "b": asyncio.Event()}
    first.start(woken["a"].set)
    second.start(woken["b"].set)
    door = SocketNotifier(database, name="door")
    try:
        await asyncio.sleep(0)
        for event in woken.values():
            event.clear()
        door.notify_soon()
        assert await woken_within(woken["a"]) and await woken_within(woken["b"])

        woken["a"].clear()
        woken["b"].clear()
        first.notify_soon()
        assert await woken_within(woken["b"])
        assert not await woken_within(woken["a"], 0.2), "a listener woke itself"
    finally:
        for notifier in (first, second, door):
            await notifier.stop()


async def a_door_wakes_the_worker(database: str, datagrams_first: int = 0) -> bool:
    """Whether a worker listening on `database` is woken by a door's wake-up, after
    `datagrams_first` it did not read."""
    worker, door = SocketNotifier(database, name="worker"), SocketNotifier(database, name="door")
    woken = asyncio.Event()
    worker.start(woken.set)
    try:
        for _ in range(datagrams_first):
            door.notify_soon()
        woken.clear()
        door.notify_soon()
        return await woken_within(woken)
    finally:
        await worker.stop()
        await door.stop()


async def test_a_database_path_too_long_for_a_socket_address_still_works(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    database = str(deep / "gateway.db")
    assert len(database) + len(".wake/worker.sock") > 108
    assert await a_door_wakes_the_worker(database)


async def test_a_burst_of_wake_ups_past_the_queue_never_blocks_the_sender(
    tmp_path: Path,
) -> None:
    # The listener reads none of them meanwhile: its queue fills, the rest are dropped.
    assert await a_door_wakes_the_worker(str(tmp_path / "gateway.db"), datagrams_first=10_000)


async def test_a_stream_of_wake_ups_wakes_a_listener_at_once_then_once_per_interval(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "gateway.db")
    worker = SocketNotifier(database, name="worker", wake_interval=0.3)
    door = SocketNotifier(database, name="door")
    wakes: list[float] = []
    first = asyncio.Event()

    def woken() -> None:
        wakes.append(asyncio.get_running_loop().time())
        first.set()

    worker.start(woken)
    try:
        wakes.clear()  # the wake-up that starting gives
        first.clear()
        door.notify_soon()
        assert await woken_within(first)
        for _ in range(20):  # a stream: one per door batch
            door.notify_soon()
            await asyncio.sleep(0.005)
        assert len(wakes) == 1, "woken again within the interval"
        await asyncio.sleep(0.6)
        assert len(wakes) == 2, "the stream's wake-ups were not gathered into one"
        assert wakes[1] - wakes[0] >= 0.3
    finally:
        await worker.stop()
        await door.stop()
