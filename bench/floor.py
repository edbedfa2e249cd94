"""The floor under bench/ingest: the least any design of the gateway's door can do on its stack.

A Starlette app (under the same uvicorn, uvloop and httptools as the gateway and bench/bare.py)
whose one route does only the steps a verified, durable ingest cannot skip, chosen by
`FLOOR_STEPS` (comma-separated, cumulative in this order):

  verify  read the body, HMAC-SHA256 it with the source's secret, compare with the Shopify
          signature header in constant time (a 401 if it differs)
  parse   orjson-parse the body (the JSON check) and SHA-256 the topic and body (the dedup key)
  store   insert (key, topic, body) into SQLite (WAL, synchronous=FULL, as the gateway's store)
          through one writer thread that commits every request waiting as one transaction
          (group commit, no window), and answer 202 only after that commit

No config, no metrics, no limits, no event model, no worker: what is left between this and
`gateway serve` is what the gateway adds on top of the promise itself. Not a product: a
measuring stick (docs/benchmarks.md, "The floor").
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import sqlite3
import threading
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

STEPS = set(filter(None, os.environ.get("FLOOR_STEPS", "verify,parse,store").split(",")))
SECRET = os.environ.get("FLOOR_SECRET", "shpss_test_gateway_secret").encode()
DATABASE = os.environ.get("FLOOR_DB", "floor.db")


class Writer:
    """One thread, one connection: each pass commits every row waiting as one transaction."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, key TEXT UNIQUE, "
            "topic TEXT, body BLOB)"
        )
        self.waiting: list[tuple[tuple[str, str, bytes], asyncio.Future[int]]] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.loop = asyncio.get_running_loop()
        threading.Thread(target=self.run, daemon=True).start()

    def add(self, row: tuple[str, str, bytes]) -> asyncio.Future[int]:
        future = self.loop.create_future()
        with self.lock:
            self.waiting.append((row, future))
        self.wake.set()
        return future

    def run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            with self.lock:
                batch, self.waiting = self.waiting, []
            if not batch:
                continue
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT OR IGNORE INTO events (key, topic, body) VALUES (?, ?, ?)",
                [row for row, _ in batch],
            )
            self.db.execute("COMMIT")
            self.loop.call_soon_threadsafe(settle, batch)


def settle(batch: list[tuple[Any, asyncio.Future[int]]]) -> None:
    for _, future in batch:
        if not future.done():
            future.set_result(0)


writer: Writer | None = None


async def hook(request: Request) -> Response:
    global writer
    body = await request.body()
    topic = request.headers.get("x-shopify-topic", "")
    if "verify" in STEPS:
        expected = base64.b64encode(hmac.new(SECRET, body, hashlib.sha256).digest())
        given = request.headers.get("x-shopify-hmac-sha256", "").encode()
        if not hmac.compare_digest(expected, given):
            return Response(b'{"error":"signature"}', status_code=401)
    key = ""
    if "parse" in STEPS:
        orjson.loads(body)
        key = hashlib.sha256(topic.encode() + b"\0" + body).hexdigest()
    if "store" in STEPS:
        if writer is None:
            writer = Writer(DATABASE)
        await writer.add((key, topic, body))
    return Response(b'{"id":0,"duplicate":false}', status_code=202, media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[Route("/hooks/{source}", hook, methods=["POST"]), Route("/healthz", healthz)]
)
