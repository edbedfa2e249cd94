"""OpenAI's Files and Vector Stores endpoints as `ScriptedModel` speaks them: what hosted
knowledge collections (`hosted: true`) upload, list and delete. State is kept in memory.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.testing.llm_script import new_id


@dataclass
class StoredFile:
    id: str
    filename: str
    data: bytes


@dataclass
class VectorStore:
    id: str
    name: str
    metadata: dict[str, str]
    # file id → attributes
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


class VectorStores:
    """`/v1/files` and `/v1/vector_stores` (with their files), enough for the `openai` client."""

    def __init__(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self.stores: dict[str, VectorStore] = {}
        self._lock = threading.Lock()

    def routes(self) -> list[Route]:
        return [
            Route("/v1/files", self._upload, methods=["POST"]),
            Route("/v1/files/{file_id}", self._delete_file, methods=["DELETE"]),
            Route("/v1/vector_stores", self._create_store, methods=["POST"]),
            Route("/v1/vector_stores", self._list_stores, methods=["GET"]),
            Route("/v1/vector_stores/{store_id}", self._delete_store, methods=["DELETE"]),
            Route("/v1/vector_stores/{store_id}/files", self._attach, methods=["POST"]),
            Route("/v1/vector_stores/{store_id}/files", self._list_files, methods=["GET"]),
            Route("/v1/vector_stores/{store_id}/files/{file_id}", self._detach, methods=["DELETE"]),
        ]

    def named(self, name: str) -> VectorStore:
        """The one vector store called `name` (fails the test if there is not exactly one)."""
        [found] = [s for s in self.stores.values() if s.name == name]
        return found

    def file_id(self, filename: str) -> str:
        [found] = [f.id for f in self.files.values() if f.filename == filename]
        return found

    async def _upload(self, request: Request) -> JSONResponse:
        fields = multipart(request.headers["content-type"], await request.body())
        filename, data = fields["file"]
        stored = StoredFile(new_id("file"), filename or "upload", data)
        with self._lock:
            self.files[stored.id] = stored
        return JSONResponse(_file(stored, fields.get("purpose", ("", b"assistants"))[1].decode()))

    async def _delete_file(self, request: Request) -> JSONResponse:
        file_id = request.path_params["file_id"]
        with self._lock:
            if self.files.pop(file_id, None) is None:
                return missing(f"file {file_id}")
        return JSONResponse({"id": file_id, "object": "file", "deleted": True})

    async def _create_store(self, request: Request) -> JSONResponse:
        body = await request.json()
        store = VectorStore(new_id("vs"), body.get("name", ""), body.get("metadata") or {})
        with self._lock:
            self.stores[store.id] = store
        return JSONResponse(_store(store))

    async def _list_stores(self, request: Request) -> JSONResponse:
        with self._lock:
            data = [_store(s) for s in self.stores.values()]
        return JSONResponse(page(data))

    async def _delete_store(self, request: Request) -> JSONResponse:
        store_id = request.path_params["store_id"]
        with self._lock:
            if self.stores.pop(store_id, None) is None:
                return missing(f"vector store {store_id}")
        return JSONResponse({"id": store_id, "object": "vector_store.deleted", "deleted": True})

    async def _attach(self, request: Request) -> JSONResponse:
        body = await request.json()
        with self._lock:
            store = self.stores.get(request.path_params["store_id"])
            if store is None or body["file_id"] not in self.files:
                return missing("vector store or file")
            store.files[body["file_id"]] = body.get("attributes") or {}
            return JSONResponse(
                _store_file(store.id, body["file_id"], store.files[body["file_id"]])
            )

    async def _list_files(self, request: Request) -> JSONResponse:
        with self._lock:
            store = self.stores.get(request.path_params["store_id"])
            if store is None:
                return missing("vector store")
            data = [_store_file(store.id, f, a) for f, a in store.files.items()]
        return JSONResponse(page(data))

    async def _detach(self, request: Request) -> JSONResponse:
        file_id = request.path_params["file_id"]
        with self._lock:
            store = self.stores.get(request.path_params["store_id"])
            if store is None or store.files.pop(file_id, None) is None:
                return missing(f"vector store file {file_id}")
        return JSONResponse({"id": file_id, "object": "vector_store.file.deleted", "deleted": True})


def multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data body's fields: name → (file name, content). The standard
    library's MIME parser reads it (starlette's form parsing needs python-multipart)."""
    message = BytesParser(policy=default).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


def page(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": False,
    }


def missing(what: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": f"no such {what}", "type": "invalid_request_error"}}, status_code=404
    )


def _file(stored: StoredFile, purpose: str) -> dict[str, Any]:
    return {
        "id": stored.id,
        "object": "file",
        "bytes": len(stored.data),
        "created_at": int(time.time()),
        "filename": stored.filename,
        "purpose": purpose,
        "status": "processed",
    }


def _store(store: VectorStore) -> dict[str, Any]:
    return {
        "id": store.id,
        "object": "vector_store",
        "created_at": int(time.time()),
        "name": store.name,
        "metadata": store.metadata,
        "usage_bytes": 0,
        "status": "completed",
        "file_counts": {
            "in_progress": 0,
            "completed": len(store.files),
            "failed": 0,
            "cancelled": 0,
            "total": len(store.files),
        },
        "last_active_at": None,
    }


def _store_file(store_id: str, file_id: str, attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "vector_store.file",
        "created_at": int(time.time()),
        "vector_store_id": store_id,
        "status": "completed",
        "usage_bytes": 0,
        "last_error": None,
        "attributes": attributes,
    }
