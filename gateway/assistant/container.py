"""The hosted code interpreter of one run: its container, the files put in, the files it made.

Each is a journaled step (`code_interpreter.container`, `.upload`, `.download`, `.delete`): a
resumed run finds its container again (or makes a new one if it was deleted at the run's end),
uploads no file twice, and takes the files it downloaded from the journal (their bytes are in
the step) instead of downloading them again.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from gateway.assistant.models import CONTAINER_PRICES
from gateway.assistant.teardown import CONTAINER, DELETE
from gateway.errors import ModelError
from gateway.rules.model import KNOWLEDGE, MAX_CONTAINER_FILES, CodeInterpreter
from gateway.runs.journal import nonce
from gateway.store import Run, Step, Store
from gateway.store.status import StepStatus

if TYPE_CHECKING:
    # Imported where a container is used: the admin API imports `shown` from here, and a
    # gateway without assistants must not load the OpenAI client (tests/test_lazy_imports.py).
    import openai

UPLOAD = "code_interpreter.upload"
DOWNLOAD = "code_interpreter.download"
# The step result field that holds a downloaded file's bytes (base64); views show its size.
CONTENT = "content_base64"
# OpenAI expires an idle container after at most this many minutes.
MAX_IDLE_MINUTES = 20

KnowledgeFiles = Callable[[str], Awaitable[list[tuple[str, bytes]]]]
"""The files (name, bytes) of a knowledge collection, to put in the container."""


@dataclass
class Interpreter:
    """The code interpreter of run `run`, talking to OpenAI through `client`; `files` are the
    run's files (what `email.send` attaches); `unsaved` are the conversation's steps not yet
    journaled (its prompt), saved with the first step here."""

    client: openai.AsyncOpenAI
    options: CodeInterpreter
    run: Run
    files: dict[str, bytes]
    store: Store
    unsaved: list[tuple[int, dict[str, Any]]]
    knowledge: KnowledgeFiles
    model: str = "default"  # the profile whose client made the container (for the sweep)
    container_id: str | None = None
    created: datetime | None = None
    cost: float = 0.0
    uploaded: set[str] = field(default_factory=set)
    fetched: set[str] = field(default_factory=set)  # container file ids downloaded or refused
    read: set[str] = field(default_factory=set)  # the `knowledge:` entries already read

    def restore(self, journal: list[Step]) -> None:
        """What the journal says was done: the container, the uploads, the downloads."""
        for step in journal:
            ok = step.status == StepStatus.SUCCEEDED
            if step.tool == CONTAINER and ok:
                self.container_id = step.result["container_id"]
                self.created = step.started_at
                self.cost += step.cost
            elif step.tool == DELETE and step.arguments["container_id"] == self.container_id:
                # Deleted (or tried) when the run ended: a retried run makes a new one, and
                # puts its files in again.
                self.container_id = self.created = None
                self.uploaded.clear()
            elif step.tool == UPLOAD:
                self.uploaded.add(step.arguments["name"])
            elif step.tool == DOWNLOAD:
                self.fetched.add(step.arguments["file_id"])
                if ok:
                    self.files[step.arguments["name"]] = base64.b64decode(step.result[CONTENT])

    def tool(self) -> dict[str, Any]:
        """The hosted tool for a model turn, on this run's own container."""
        return {"type": "code_interpreter", "container": self.container_id}

    def over_time(self) -> str | None:
        """Why the run must stop before its next turn, if its container is past its time."""
        if self.created is None:
            return None
        seconds = (datetime.now(UTC) - self.created).total_seconds()
        limit = self.options.max_container_minutes
        if seconds < limit * 60:
            return None
        return f"code_interpreter container {seconds:.0f} s old (max_container_minutes {limit:g})"

    async def prepare(self, position: int, tools: list[dict[str, Any]]) -> int:
        """Before a model turn: the container (made once per run) offered in `tools`, and the
        listed files that exist by now put in it. Returns the next free position."""
        import openai  # its client is loaded already: `self.client` is one

        try:
            if self.container_id is None:
                position = await self._create(position)
            for name, data in await self._pending():
                position = await self._upload(position, name, data)
        except openai.APIError as exc:
            raise _failed(exc) from exc
        if self.tool() not in tools:
            tools.append(self.tool())
        return position

    async def collect(self, position: int, cited: list[dict[str, Any]] | None = None) -> int:
        """After a turn that ran code or cited container files: the files its answer cites
        (`container_file_citation`: {container_id, file_id, filename}), or if it cites none,
        every file the code made (found by listing the container), downloaded into the run's
        files (at most `max_file_bytes` each, MAX_CONTAINER_FILES in all), each a step."""
        if self.container_id is None:
            return position
        import openai

        try:
            if cited:
                return await self._collect_cited(position, cited)
            made = [
                f
                async for f in self.client.containers.files.list(self.container_id, limit=100)
                if f.source != "user" and f.id not in self.fetched
            ]
            for entry in sorted(made, key=lambda f: (f.created_at, f.path)):
                position = await self._download(position, entry.id, entry.path, entry.bytes)
        except openai.APIError as exc:
            raise _failed(exc) from exc
        return position

    async def _collect_cited(self, position: int, cited: list[dict[str, Any]]) -> int:
        """The cited files, in the order cited, each once; one cited in another container
        than the run's is refused (the gateway fetches from its own container only)."""
        import openai

        assert self.container_id is not None
        for note in cited:
            file_id, name = note["file_id"], note.get("filename") or note["file_id"]
            if file_id in self.fetched:
                continue
            path = f"/mnt/data/{name}"
            if note["container_id"] != self.container_id:
                refused = f"cited in container {note['container_id']}, not the run's"
                position = await self._download(position, file_id, path, 0, refused)
                continue
            try:
                entry = await self.client.containers.files.retrieve(
                    file_id, container_id=self.container_id
                )
            except openai.NotFoundError:  # the model cited what is not there: its step says so
                refused = f"no file {file_id} in the run's container"
                position = await self._download(position, file_id, path, 0, refused)
                continue
            position = await self._download(position, entry.id, entry.path, entry.bytes)
        return position

    async def _create(self, position: int) -> int:
        options = self.options
        created = await self.client.containers.create(
            name=f"gateway-run-{self.run.id}",
            memory_limit=options.memory,
            expires_after={
                "anchor": "last_active_at",
                "minutes": min(MAX_IDLE_MINUTES, math.ceil(options.max_container_minutes)),
            },
        )
        self.container_id = created.id
        self.created = datetime.now(UTC)
        price = CONTAINER_PRICES[options.memory]
        self.cost += price
        arguments: dict[str, Any] = {
            "memory": options.memory,
            "name": created.name,
            "model": self.model,
        }
        if options.keep_container:
            arguments["keep"] = True  # not deleted at the run's end, by the sweep neither
        step = self._step(CONTAINER, arguments, {"container_id": created.id})
        await self.save(position, step, price)
        return position + 1

    async def _pending(self) -> list[tuple[str, bytes]]:
        """The listed files not in the container yet that exist by now."""
        found: list[tuple[str, bytes]] = []
        for entry in self.options.files:
            if entry.startswith(KNOWLEDGE) and entry not in self.read:
                self.read.add(entry)  # read once per process: its files do not come later
                found += await self.knowledge(entry.removeprefix(KNOWLEDGE))
            elif entry in self.files:
                found.append((entry, self.files[entry]))
        return [(name, data) for name, data in found if name not in self.uploaded]

    async def _upload(self, position: int, name: str, data: bytes) -> int:
        assert self.container_id is not None
        self.uploaded.add(name)
        cap = self.options.max_file_bytes
        if len(data) > cap:
            error = f"code_interpreter: {name} is {len(data)} bytes, over the {cap}-byte cap"
            await self.save(position, self._step(UPLOAD, {"name": name}, error=error), 0.0)
            return position + 1
        made = await self.client.containers.files.create(self.container_id, file=(name, data))
        result = {"file_id": made.id, "path": made.path, "bytes": len(data)}
        await self.save(position, self._step(UPLOAD, {"name": name}, result), 0.0)
        return position + 1

    async def _download(
        self, position: int, file_id: str, path: str, size: int, refused: str | None = None
    ) -> int:
        assert self.container_id is not None
        name = PurePosixPath(path).name
        arguments = {"file_id": file_id, "name": name, "path": path, "bytes": size}
        downloaded = len(self.fetched)
        self.fetched.add(file_id)
        cap = self.options.max_file_bytes
        error = refused
        if error is None and downloaded >= MAX_CONTAINER_FILES:
            error = f"the run already has {MAX_CONTAINER_FILES} container files (the limit)"
        elif error is None and size > cap:
            error = f"{size} bytes, over the {cap}-byte cap (max_file_bytes)"
        elif error is None:
            content = await self.client.containers.files.content.retrieve(
                file_id, container_id=self.container_id
            )
            data = content.read()
            if len(data) > cap:  # the listing said less: the bytes decide
                error = f"{len(data)} bytes, over the {cap}-byte cap (max_file_bytes)"
        if error is not None:
            error = f"code_interpreter: {name} not downloaded: {error}"
            await self.save(position, self._step(DOWNLOAD, arguments, error=error), 0.0)
            return position + 1
        self.files[name] = data
        result = {
            "name": name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            CONTENT: base64.b64encode(data).decode(),
        }
        await self.save(position, self._step(DOWNLOAD, arguments, result), 0.0)
        return position + 1

    async def save(self, position: int, values: dict[str, Any], price: float) -> None:
        """Journal a step, with the prompt if not saved yet, counting what it cost."""
        usage = (0, 0, price) if price else None
        steps = [*self.unsaved, (position, {**values, "cost": price})]
        await self.store.steps.record(self.run.id, steps, usage=usage)
        self.unsaved.clear()

    def _step(
        self,
        tool: str,
        arguments: dict[str, Any],
        result: dict[str, Any] | None = None,
        *,
        error: str | None = None,
    ) -> dict[str, Any]:
        return {
            "kind": "tool",
            "tool": tool,
            "arguments": arguments,
            "idempotency_key": f"{self.run.id}.{tool}.{nonce()}",
            "status": StepStatus.FAILED if error else StepStatus.SUCCEEDED,
            "result": result,
            "error": error,
            "started_at": datetime.now(UTC),
        }


def _failed(exc: openai.APIError) -> ModelError:
    """A containers API failure: retried with the run when it may pass, else the run fails."""
    import openai

    status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
    retryable = status is None or status == 429 or status >= 500
    if isinstance(exc, openai.APIResponseValidationError):
        retryable = False
    return ModelError(f"code_interpreter: {exc.message}", retryable=retryable, status=status)


def shown(result: Any) -> Any:
    """A download step's result as views show it: its bytes counted, not printed."""
    if isinstance(result, dict) and CONTENT in result:
        return {**result, CONTENT: f"({result.get('bytes', '?')} bytes, kept for attachments)"}
    return result
