"""Archives of pruned history: gzip-compressed JSON Lines in a directory or an S3 bucket.

One file per pruned batch, named `KIND/DATE/KIND-FIRSTID-RANDOM.jsonl.gz` (DATE: the day of
the batch's oldest record), written whole before the batch is deleted.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from gateway.errors import ArchiveError

Record = dict[str, Any]
KINDS = ("events", "runs")
__all__ = ["Archive", "ArchiveError", "DirectoryArchive", "S3Archive", "open_archive"]


class Archive(Protocol):
    async def write(self, kind: str, records: Sequence[Record]) -> str:
        """Store a batch of records of `kind` (events or runs); the name it is stored under."""
        ...

    async def names(self, kind: str) -> list[str]:
        """Every stored batch of `kind`, in name order (oldest day first)."""
        ...

    async def read(self, name: str) -> list[Record]: ...


def encode(records: Sequence[Record]) -> bytes:
    return gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in records), compresslevel=6)


def decode(data: bytes) -> list[Record]:
    return [orjson.loads(line) for line in gzip.decompress(data).splitlines() if line]


def batch_name(kind: str, records: Sequence[Record]) -> str:
    first = records[0]["run"] if kind == "runs" else records[0]
    stamp = first.get("received_at") or first.get("created_at") or "0000-00-00"
    return f"{kind}/{stamp[:10]}/{kind}-{first['id']}-{secrets.token_hex(4)}.jsonl.gz"


class DirectoryArchive:
    """Batches as files under `root`, each written to a temporary name, synced, then renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def write(self, kind: str, records: Sequence[Record]) -> str:
        name = batch_name(kind, records)
        await asyncio.to_thread(self._write, name, encode(records))
        return name

    def _write(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        partial.rename(path)

    async def names(self, kind: str) -> list[str]:
        base = self.root / kind
        found = await asyncio.to_thread(lambda: sorted(base.glob("*/*.jsonl.gz")))
        return [str(path.relative_to(self.root)) for path in found]

    async def read(self, name: str) -> list[Record]:
        return decode(await asyncio.to_thread((self.root / name).read_bytes))


class S3Archive:
    """Batches as objects under `prefix` in an S3-compatible bucket, through boto3 (in a
    thread: boto3 blocks). Credentials come from boto3's usual chain (environment, profile)."""

    def __init__(self, bucket: str, prefix: str, endpoint: str | None = None) -> None:
        try:
            import boto3  # type: ignore[import-untyped]
        except ImportError:
            raise ArchiveError(
                "an s3:// archive needs boto3: pip install 'webhook-gateway[s3]'"
            ) from None
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = boto3.client("s3", endpoint_url=endpoint)

    async def write(self, kind: str, records: Sequence[Record]) -> str:
        name = batch_name(kind, records)
        data = encode(records)
        await asyncio.to_thread(
            self.client.put_object, Bucket=self.bucket, Key=self.prefix + name, Body=data
        )
        return name

    async def names(self, kind: str) -> list[str]:
        def listing() -> list[str]:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}{kind}/"
            )
            keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
            return sorted(k[len(self.prefix) :] for k in keys if k.endswith(".jsonl.gz"))

        return await asyncio.to_thread(listing)

    async def read(self, name: str) -> list[Record]:
        def get() -> bytes:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)
            return bytes(answer["Body"].read())

        return decode(await asyncio.to_thread(get))


def open_archive(where: str | None, base_dir: Path, endpoint: str | None = None) -> Archive | None:
    """The archive at `where`: `s3://bucket/prefix/`, or a directory (relative to `base_dir`)."""
    if not where:
        return None
    if where.startswith("s3://"):
        parts = urlsplit(where)
        if not parts.netloc:
            raise ArchiveError(f"{where!r}: an s3:// archive names a bucket (s3://bucket/prefix/)")
        return S3Archive(parts.netloc, parts.path, endpoint)
    return DirectoryArchive((base_dir / where).resolve())
