"""OpenAI's Containers endpoints as `ScriptedModel` speaks them: what the hosted code
interpreter's container holds (files uploaded to it, files its code made) and serves.

State is kept in memory; `content_requests` counts the downloads, so a test can tell that a
resumed run did not download a file twice.
"""

from __future__ import annotations

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

    def file(self, name: str) -> ContainerFile:
        """The one file of the container called `name` (fails the test otherwise)."""
        [found] = [f for f in self.files.values() if f.path == f"{DATA}/{name}"]
        return found


class Containers:
    """`/v1/containers` and their files: create, retrieve, upload, list, content."""

    def __init__(self) -> None:
        self.containers: dict[str, Container] = {}
        self.content_requests: list[str] = []  # the file id of every content download
        self._failures: list[int] = []  # statuses the next requests answer, in order
        self._lock = threading.Lock()

    def fail_next(self, *statuses: int) -> None:
        """The next containers requests answer these HTTP errors, one each, in order."""
        with self._lock:
            self._failures.extend(statuses)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/containers", self._failing(self._create), methods=["POST"]),
            Route("/v1/containers/{cid}", self._failing(self._retrieve), methods=["GET"]),
            Route("/v1/containers/{cid}/files", self._failing(self._upload), methods=["POST"]),
            Route("/v1/containers/{cid}/files", self._failing(self._list), methods=["GET"]),
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
                kind = "server_error" if status >= 500 else "invalid_request_error"
                body = {"error": {"message": f"scripted {status}", "type": kind}}
                return JSONResponse(body, status_code=status)
            return await endpoint(request)

        return answer

    def produce(self, container_id: str, files: tuple[tuple[str, bytes], ...]) -> str | None:
        """Code ran in the container and wrote `files`; a problem if there is no such one."""
        with self._lock:
            container = self.containers.get(container_id)
            if container is None:
                return f"code ran in container {container_id!r}, which does not exist"
            for name, data in files:
                made = ContainerFile(new_id("cfile"), f"{DATA}/{name}", data, "assistant")
                container.files[made.id] = made
        return None

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
            container = self.containers.get(request.path_params["cid"])
        if container is None:
            return missing("container")
        return JSONResponse(_container(container))

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
            container = self.containers.get(request.path_params["cid"])
            if container is None:
                return missing("container")
            container.files[made.id] = made
        return JSONResponse(_file(container.id, made))

    async def _list(self, request: Request) -> Response:
        with self._lock:
            container = self.containers.get(request.path_params["cid"])
            if container is None:
                return missing("container")
            data = [_file(container.id, f) for f in container.files.values()]
        return JSONResponse(page(data))

    async def _content(self, request: Request) -> Response:
        file_id = request.path_params["fid"]
        with self._lock:
            container = self.containers.get(request.path_params["cid"])
            found = container.files.get(file_id) if container is not None else None
            if found is None:
                return missing(f"container file {file_id}")
            self.content_requests.append(file_id)
        return Response(found.data, media_type="application/octet-stream")


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
