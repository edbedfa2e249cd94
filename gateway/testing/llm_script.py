"""The script of a `ScriptedModel`: the steps a test writes, one per model response.

`call`, `turn`, `answer`, `error` and `delay` build them; the wire formats render them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Expect = Callable[[dict[str, Any]], None]
Usage = tuple[int, int]


@dataclass(frozen=True)
class ScriptedCall:
    name: str
    arguments: str
    call_id: str | None = None


@dataclass(frozen=True)
class ScriptedCode:
    """Code the hosted code_interpreter runs, its logs, and the files it writes."""

    code: str
    logs: str = ""
    files: tuple[tuple[str, bytes], ...] = ()
    # The files of `files` the answer cites (`container_file_citation` annotations).
    cite: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """One scripted model response; build it with `call`, `turn`, `answer`, `error`, `delay`."""

    calls: tuple[ScriptedCall, ...] = ()
    text: str | None = None
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None
    seconds: float = 0.0
    expect: Expect | None = None
    usage: Usage | None = None
    # Files a hosted `file_search` found and the answer cites: (file id, file name).
    citations: tuple[tuple[str, str], ...] = ()
    # Code the hosted code_interpreter ran in this response (Responses API only).
    ran: tuple[ScriptedCode, ...] = ()
    # Set by the server once the code ran: the files cited, (container id, file id, name).
    container_citations: tuple[tuple[str, str, str], ...] = ()

    def describe(self) -> str:
        if self.status != 200:
            return f"error({self.status})"
        parts = [f"code({r.code[:30]!r})" for r in self.ran]
        parts += [f"call({c.name})" for c in self.calls]
        if self.text is not None:
            parts.append(f"answer({self.text[:40]!r})")
        if self.seconds:
            parts.insert(0, f"delay({self.seconds})")
        return " + ".join(parts) or "empty"


def call(
    name: str,
    arguments: dict[str, Any] | str,
    call_id: str | None = None,
    *,
    expect: Expect | None = None,
    usage: Usage | None = None,
) -> Step:
    """The model calls the tool `name` (wire form, `family__name`); a str is sent as is."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return Step(calls=(ScriptedCall(name, text, call_id),), expect=expect, usage=usage)


def turn(*parts: Step, expect: Expect | None = None, usage: Usage | None = None) -> Step:
    """One response made of several `call`s (parallel calls), and optionally an `answer`."""
    texts = [p.text for p in parts if p.text is not None]
    return Step(
        calls=tuple(c for p in parts for c in p.calls),
        text="\n\n".join(texts) if texts else None,
        expect=expect,
        usage=usage,
    )


def answer(
    text: str,
    *,
    expect: Expect | None = None,
    usage: Usage | None = None,
    citations: list[tuple[str, str]] | None = None,
) -> Step:
    """The model answers with text and calls nothing; with `citations` (file id, name), after
    a hosted `file_search`, its text cites those files (Responses API only)."""
    return Step(text=text, expect=expect, usage=usage, citations=tuple(citations or ()))


def code(
    source: str,
    *,
    logs: str = "",
    files: dict[str, bytes] | None = None,
    cite: list[str] | None = None,
    then: Step | None = None,
    expect: Expect | None = None,
    usage: Usage | None = None,
) -> Step:
    """The hosted code_interpreter runs `source` in the request's container, which then holds
    `files` (made by the code); the response's text cites those named in `cite` as OpenAI
    does (`container_file_citation` annotations); `then` adds calls or an answer to it."""
    base = then if then is not None else Step()
    ran = ScriptedCode(source, logs, tuple((files or {}).items()), tuple(cite or ()))
    return Step(
        calls=base.calls,
        text=base.text,
        ran=(ran, *base.ran),
        expect=expect or base.expect,
        usage=usage or base.usage,
    )


def error(
    status: int,
    retry_after: float | None = None,
    body: Any = None,
    *,
    retry_after_ms: int | None = None,
    expect: Expect | None = None,
) -> Step:
    """An HTTP error, with an OpenAI-style error body unless `body` is given."""
    headers: list[tuple[str, str]] = []
    if retry_after is not None:
        headers.append(("retry-after", f"{retry_after:g}"))
    if retry_after_ms is not None:
        headers.append(("retry-after-ms", str(retry_after_ms)))
    return Step(status=status, headers=tuple(headers), body=body, expect=expect)


def delay(seconds: float, then: Step | None = None, *, expect: Expect | None = None) -> Step:
    """Hold the request `seconds` (a client with a shorter timeout gives up), then answer `then`.

    Without `then` the held request ends in a 504, which a client that timed out never sees.
    """
    base = then if then is not None else Step(status=504)
    return Step(
        calls=base.calls,
        text=base.text,
        status=base.status,
        headers=base.headers,
        body=base.body,
        seconds=seconds,
        expect=expect or base.expect,
        usage=base.usage,
    )


def estimate(request: dict[str, Any], output: list[dict[str, Any]]) -> Usage:
    # About four characters a token: plausible numbers when a test does not script usage.
    return max(1, len(json.dumps(request)) // 4), max(1, len(json.dumps(output)) // 4)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"
