"""OpenAI's Containers endpoints as `ScriptedModel` speaks them: what the hosted code
interpreter's container holds (files uploaded to it, files its code made) and serves.

State is kept in memory; `content_requests` counts the downloads, so a test can tell that a
resumed run did not download a file twice; `deleted` holds the containers deleted, in order.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.testing.llm_files import missing, multipart, page
from gateway.testing.llm_script import new_id

DATA = "/mnt/data"  # where the container keeps files, as OpenAI's does


@dataclass
class ContainerFile:
    id: str
    path: str
    data: bytes
    source: str  # "user" (uploaded) or "assistant" (made by code)
    created_at: int = field(default_factory=lambda: int(time.time()))


@dataclass
class Container:
    id: str
    name: str
    memory_limit: str
    expires_after: dict[str, Any] | None
    created_at: int = field(default_factory=lambda: int(time.time()))
    files: dict[str, ContainerFile] = field(default_factory=dict)
    deleted: bool = False  # kept (deleted) for the test to look into, as OpenAI does not

    def file(self, name: str) -> ContainerFile:
        """The one file of the container called `name` (fails the test otherwise)."""
        [found] = [f for f in self.files.values() if f.path == f"{DATA}/{name}"]
        return found


class Containers:
    """`/v1/containers` (every one made, deleted ones too) and their files: create, retrieve,
    delete, upload, list, retrieve a file, content."""

    def __init__(self) -> None:
        self.containers: dict[str, Container] = {}
        self.content_requests: list[str] = []  # the file id of every content download
        self.list_requests: list[str] = []  # the container id of every files listing
        self.deleted: list[str] = []  # the id of every container deleted, in order
        self.delete_requests: list[str] = []  # the id in every delete request, answered or not
        self._failures: list[int] = []  # statuses the next requests answer, in order
        self._delete_failures: list[int] = []  # statuses the next delete requests answer
        self.delete_hold = 0.0  # seconds a delete request waits before it is carried out
        self._lock = threading.Lock()

    def _live(self, container_id: str) -> Container | None:
        """The container, unless it was never made or was deleted (OpenAI answers 404)."""
        found = self.containers.get(container_id)
        return found if found is not None and not found.deleted else None

    def fail_next(self, *statuses: int) -> None:
        """The next containers requests answer these HTTP errors, one each, in order."""
        with self._lock:
            self._failures.extend(statuses)

    def fail_next_deletes(self, *statuses: int) -> None:
        """The next container delete requests answer these HTTP errors, one each, in order."""
        with self._lock:
            self._delete_failures.extend(statuses)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/containers", self._failing(self._create), methods=["POST"]),
            Route("/v1/containers/{cid}", self._failing(self._retrieve), methods=["GET"]),
            Route("/v1/containers/{cid}", self._failing(self._delete), methods=["DELETE"]),
            Route("/v1/containers/{cid}/files", self._failing(self._upload), methods=["POST"]),
            Route("/v1/containers/{cid}/files", self._failing(self._list), methods=["GET"]),
            Route(
                "/v1/containers/{cid}/files/{fid}",
                self._failing(self._retrieve_file),
                methods=["GET"],
            ),
            Route(
                "/v1/containers/{cid}/files/{fid}/content",
                self._failing(self._content),
                methods=["GET"],
            ),
        ]

    def _failing(
        self, endpoint: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            with self._lock:
                status = self._failures.pop(0) if self._failures else None
            if status is not None:
                return _scripted_error(status)
            return await endpoint(request)

        return answer

    def produce(
        self, container_id: str, files: tuple[tuple[str, bytes], ...]
    ) -> dict[str, str] | str:
        """Code ran in the container and wrote `files`: their ids by name, or a problem if
        there is no such container (never made, or deleted)."""
        made: dict[str, str] = {}
        with self._lock:
            container = self._live(container_id)
            if container is None:
                return f"code ran in container {container_id!r}, which does not exist"
            for name, data in files:
                written = ContainerFile(new_id("cfile"), f"{DATA}/{name}", data, "assistant")
                container.files[written.id] = written
                made[name] = written.id
        return made

    async def _create(self, request: Request) -> Response:
        body = await request.json()
        container = Container(
            new_id("cntr"),
            body.get("name", ""),
            body.get("memory_limit", "1g"),
            body.get("expires_after"),
        )
        with self._lock:
            self.containers[container.id] = container
        return JSONResponse(_container(container))

    async def _retrieve(self, request: Request) -> Response:
        with self._lock:
            container = self._live(request.path_params["cid"])
        if container is None:
            return missing("container")
        return JSONResponse(_container(container))

    async def _delete(self, request: Request) -> Response:
        # As OpenAI answers: the deleted object; a 404 for one that does not exist (any more).
        cid = request.path_params["cid"]
        with self._lock:
            self.delete_requests.append(cid)
        # Held, then carried out even if the client has gone meanwhile, as a server would.
        await asyncio.sleep(self.delete_hold)
        with self._lock:
            failure = self._delete_failures.pop(0) if self._delete_failures else None
            container = self._live(cid)
            if failure is None and container is not None:
                container.deleted = True
                self.deleted.append(cid)
                return JSONResponse({"id": cid, "object": "container.deleted", "deleted": True})
        if failure is not None:
            return _scripted_error(failure)
        return missing("container")

    async def _upload(self, request: Request) -> Response:
        fields = multipart(request.headers["content-type"], await request.body())
        if "file" not in fields:
            return JSONResponse(
                {"error": {"message": "file is required", "type": "invalid_request_error"}},
                status_code=400,
            )
        filename, data = fields["file"]
        made = ContainerFile(new_id("cfile"), f"{DATA}/{filename or 'upload'}", data, "user")
        with self._lock:
            container = self._live(request.path_params["cid"])
            if container is None:
                return missing("container")
            container.files[made.id] = made
        return JSONResponse(_file(container.id, made))

    async def _list(self, request: Request) -> Response:
        with self._lock:
            container = self._live(request.path_params["cid"])
            if container is None:
                return missing("container")
            self.list_requests.append(container.id)
            data = [_file(container.id, f) for f in container.files.values()]
        return JSONResponse(page(data))

    async def _retrieve_file(self, request: Request) -> Response:
        file_id = request.path_params["fid"]
        with self._lock:
            container = self._live(request.path_params["cid"])
            found = container.files.get(file_id) if container is not None else None
        if container is None or found is None:
            return missing(f"container file {file_id}")
        return JSONResponse(_file(container.id, found))

    async def _content(self, request: Request) -> Response:
        file_id = request.path_params["fid"]
        with self._lock:
            container = self._live(request.path_params["cid"])
            found = container.files.get(file_id) if container is not None else None
            if found is None:
                return missing(f"container file {file_id}")
            self.content_requests.append(file_id)
        return Response(found.data, media_type="application/octet-stream")


def _scripted_error(status: int) -> JSONResponse:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = {"error": {"message": f"scripted {status}", "type": kind}}
    return JSONResponse(body, status_code=status)


def _container(container: Container) -> dict[str, Any]:
    return {
        "id": container.id,
        "object": "container",
        "created_at": container.created_at,
        "name": container.name,
        "status": "running",
        "expires_after": container.expires_after,
        "last_active_at": container.created_at,
        "memory_limit": container.memory_limit,
    }


def _file(container_id: str, made: ContainerFile) -> dict[str, Any]:
    return {
        "id": made.id,
        "object": "container.file",
        "bytes": len(made.data),
        "container_id": container_id,
        "created_at": made.created_at,
        "path": made.path,
        "source": made.source,
    }
