"""STAND-IN for Mailpit: an SMTP sink on :1025 listed as JSON on :8025/api/v1/messages.

Only what deploy/test reads of Mailpit's API: {"total": N, "messages": [{"ID", "Subject",
"From": {"Address"}, "To": [{"Address"}]}]}, newest first. Messages live in memory.
"""

import asyncio
import email
import email.policy
import json
import signal
from email.utils import getaddresses, parseaddr
from typing import Any

from aiosmtpd.controller import Controller

MESSAGES: list[dict[str, Any]] = []


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        MESSAGES.insert(
            0,
            {
                "ID": str(len(MESSAGES) + 1),
                "Subject": str(message.get("Subject", "")),
                "From": {"Address": parseaddr(str(message.get("From", "")))[1]},
                "To": [{"Address": a} for _, a in getaddresses([str(message.get("To", ""))])],
                "Size": len(envelope.content),
            },
        )
        return "250 Message accepted for delivery"


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await reader.readuntil(b"\r\n\r\n")
        path = request.split(b" ")[1].decode()
        if path.startswith("/api/v1/messages"):
            status, body = "200 OK", {"total": len(MESSAGES), "messages": MESSAGES}
        elif path in ("/readyz", "/livez"):
            status, body = "200 OK", {"status": "ok"}
        else:
            status, body = "404 Not Found", {"error": "not found"}
        payload = json.dumps(body).encode()
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
    except (asyncio.IncompleteReadError, IndexError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    smtp = Controller(Sink(), hostname="0.0.0.0", port=1025)  # noqa: S104
    smtp.start()
    http = await asyncio.start_server(answer, "0.0.0.0", 8025)  # noqa: S104
    print("mailsink (Mailpit stand-in): SMTP on 1025, API on 8025", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with http:
        await stop.wait()
    smtp.stop()


if __name__ == "__main__":
    asyncio.run(main())
