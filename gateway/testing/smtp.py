"""An SMTP server on loopback (aiosmtpd in a thread) that keeps every message it receives.

It can be taken down and brought back on the same port, answer the next message with an error
reply, and offer STARTTLS when given a TLS context.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Delivery:
    """One message as the server received it: the envelope and the parsed message."""

    mail_from: str
    recipients: list[str]
    message: EmailMessage
    tls: bool


class SmtpServer:
    """`with SmtpServer() as smtp:` serves on `smtp.host`:`smtp.port` until the block ends.

    `smtp.messages` holds what arrived; `smtp.down()` is a context in which nothing listens.
    """

    def __init__(
        self, *, tls_context: ssl.SSLContext | None = None, require_starttls: bool = False
    ) -> None:
        self.host = "127.0.0.1"
        self.deliveries: list[Delivery] = []
        self._replies: deque[str] = deque()
        self._controller = _Controller(
            _Handler(self),
            hostname=self.host,
            port=0,
            # A fixed name: the default asks DNS for our FQDN, which can be slow.
            server_hostname="smtp.test",
            tls_context=tls_context,
            require_starttls=require_starttls,
        )
        self.running = False

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def messages(self) -> list[EmailMessage]:
        return [d.message for d in self.deliveries]

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """A `handlers.email` block that sends to this server."""
        return {
            "host": self.host,
            "port": self.port,
            "from": "Gateway <gateway@example.com>",
            "starttls": False,
            "timeout": 5,
            **overrides,
        }

    def reply_next(self, reply: str) -> None:
        """Answer the next message's DATA with `reply` (e.g. "451 4.3.0 Try again later")
        instead of accepting it."""
        self._replies.append(reply)

    def start(self) -> None:
        self._controller.start()
        self.running = True

    def stop(self) -> None:
        self._controller.stop()
        self.running = False

    @contextmanager
    def down(self) -> Iterator[None]:
        """Nothing listens on the port inside the block; the server is back after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.running:
            self.stop()


class _Controller(Controller):
    """aiosmtpd's Controller, able to bind port 0 and keep that port across restarts."""

    def start(self) -> None:
        # stop() closes the loop; a restart needs a fresh one.
        if self.loop.is_closed():
            self.loop = asyncio.new_event_loop()
        super().start()

    async def _bind(self) -> Any:
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
        )
        self.port = server.sockets[0].getsockname()[1]
        return server

    def _create_server(self) -> Any:
        return self._bind()


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        if self.server._replies:
            return self.server._replies.popleft()
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.server.deliveries.append(
            Delivery(
                mail_from=envelope.mail_from,
                recipients=list(envelope.rcpt_tos),
                message=message,
                tls=session.ssl is not None,
            )
        )
        return "250 OK"
