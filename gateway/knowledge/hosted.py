"""Hosted collections (`hosted: true`): the files uploaded to an OpenAI vector store, synced by
content hash, and searched by the model itself through the hosted `file_search` tool.

The vector store is found by its name, `gateway:<collection>`; each of its files carries the
path and SHA-256 it was uploaded from as attributes, so a sync needs no state of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import HostedError
from gateway.knowledge.indexer import IndexReport, key_of, matching_files
from gateway.knowledge.settings import Collection

if TYPE_CHECKING:
    import openai

PREFIX = "gateway:"
# Metadata that marks a vector store as made by the gateway for a collection.
MARK = "gateway_collection"


@dataclass
class _Remote:
    vector_store_id: str
    # path → (file id, sha256)
    files: dict[str, tuple[str, str]] = field(default_factory=dict)


class VectorStores:
    """The gateway's vector stores on one OpenAI client (a Responses profile's)."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self.client = client

    async def find(self, name: str) -> str | None:
        """The id of collection `name`'s vector store, if it has one."""
        async for store in self.client.vector_stores.list(limit=100):
            if store.name == PREFIX + name and (store.metadata or {}).get(MARK) == name:
                return store.id
        return None

    async def sync(self, name: str, collection: Collection, base_dir: Path) -> IndexReport:
        """Upload new and changed files, remove those gone from disk; create the store."""
        report = IndexReport(name)
        import openai  # its client is already loaded: whoever made `self.client` did

        try:
            remote = await self._remote(name)
            local = await asyncio.to_thread(_local, collection, base_dir)
            for path, (file, digest) in local.items():
                known = remote.files.get(path)
                if known is not None and known[1] == digest:
                    report.unchanged += 1
                    continue
                await self._upload(remote.vector_store_id, path, file, digest)
                if known is not None:
                    await self._remove(remote.vector_store_id, known[0])
                (report.updated if known else report.added).append(path)
            for path in sorted(set(remote.files) - set(local)):
                await self._remove(remote.vector_store_id, remote.files[path][0])
                report.removed.append(path)
        except openai.APIError as exc:
            raise HostedError(f"knowledge.{name} (hosted): {exc.message}") from exc
        return report

    async def delete(self, name: str) -> bool:
        """Delete collection `name`'s vector store and its files; False if it had none."""
        import openai  # its client is already loaded: whoever made `self.client` did

        try:
            found = await self.find(name)
            if found is None:
                return False
            async for entry in self.client.vector_stores.files.list(found, limit=100):
                await self.client.files.delete(entry.id)
            await self.client.vector_stores.delete(found)
        except openai.APIError as exc:
            raise HostedError(f"knowledge.{name} (hosted): {exc.message}") from exc
        return True

    async def names(self) -> list[str]:
        """The collections that have a vector store made by the gateway."""
        return [
            (store.metadata or {})[MARK]
            async for store in self.client.vector_stores.list(limit=100)
            if (store.metadata or {}).get(MARK)
        ]

    async def _remote(self, name: str) -> _Remote:
        found = await self.find(name)
        if found is None:
            created = await self.client.vector_stores.create(
                name=PREFIX + name, metadata={MARK: name}
            )
            return _Remote(created.id)
        remote = _Remote(found)
        async for entry in self.client.vector_stores.files.list(found, limit=100):
            attributes = entry.attributes or {}
            remote.files[str(attributes.get("path"))] = (entry.id, str(attributes.get("sha256")))
        return remote

    async def _upload(self, store_id: str, path: str, file: Path, digest: str) -> None:
        data = await asyncio.to_thread(file.read_bytes)
        uploaded = await self.client.files.create(file=(file.name, data), purpose="assistants")
        await self.client.vector_stores.files.create(
            store_id, file_id=uploaded.id, attributes={"path": path, "sha256": digest}
        )

    async def _remove(self, store_id: str, file_id: str) -> None:
        await self.client.vector_stores.files.delete(file_id, vector_store_id=store_id)
        await self.client.files.delete(file_id)


def _local(collection: Collection, base_dir: Path) -> dict[str, tuple[Path, str]]:
    found = {}
    for path in matching_files(collection.paths, base_dir):
        if path.stat().st_size <= collection.max_file_bytes:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[key_of(path, base_dir)] = (path, digest)
    return found
