"""`email.send`: send a mail (text, optional HTML, attachments from the run's files) over SMTP.

SMTP allows no `recover`; the Message-ID comes from the step's key, so receivers can drop a re-send.
"""

from __future__ import annotations

import hashlib
import mimetypes
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import Field, field_validator

from gateway.tools import HTML, Family, FamilySettings, PermanentToolError, ToolContext, ToolError

DEFAULT_TIMEOUT = 30.0


class EmailSettings(FamilySettings):
    """`handlers.email`: the SMTP server and the sender. A missing `host` or `from` fails the
    first call."""

    host: str | None = None
    port: int | None = None
    sender: str | None = Field(None, alias="from")
    # None: upgrade if the server offers STARTTLS; true: insist; false: never.
    starttls: bool | None = None
    ssl: bool = False  # implicit TLS (port 465)
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)

    @field_validator("port", mode="before")
    @classmethod
    def _unset_port(cls, value: Any) -> Any:
        # `port: ${SMTP_PORT:-}` left empty means the default port.
        return None if value in ("", 0) else value


family = Family("email", EmailSettings)
EmailContext = ToolContext[EmailSettings, None]


@family.tool("email.send")
async def send(
    context: EmailContext,
    to: Annotated[list[str], Field(min_length=1, description="Recipient addresses")],
    subject: Annotated[str, Field(description="Subject line")],
    text: Annotated[str, Field(description="Plain-text body")],
    html: Annotated[str | None, HTML, Field(description="HTML body, shown instead of text")] = None,
    cc: Annotated[list[str] | None, Field(description="Carbon-copy addresses")] = None,
    attachments: Annotated[
        list[str] | None, Field(description="Names of files produced earlier in the run")
    ] = None,
) -> dict[str, Any]:
    """Send an email; returns its Message-ID and the recipients the server accepted."""
    settings = context.settings
    sender, host = settings.sender, settings.host
    if not sender or not host:
        raise PermanentToolError("handlers.email needs `host` and `from`")
    message = compose(
        context,
        sender=sender,
        to=to,
        cc=cc or [],
        subject=subject,
        text=text,
        html=html,
        attachments=attachments or [],
    )
    # Imported by the first mail, not by every gateway that loads the built-in tools (~9 MB).
    import aiosmtplib

    starttls = settings.starttls
    try:
        refused, _ = await aiosmtplib.send(
            message,
            hostname=host,
            port=settings.port,
            username=settings.username,
            password=settings.password,
            use_tls=settings.ssl,
            start_tls=None if starttls is None or settings.ssl else starttls,
            cert_bundle=settings.ca_file,
            timeout=settings.timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as error:
        reasons = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in error.recipients)
        if any(400 <= r.code < 500 for r in error.recipients):
            raise ToolError(f"the mail server deferred every recipient ({reasons})") from error
        raise PermanentToolError(f"the mail server refused every recipient ({reasons})") from error
    except aiosmtplib.SMTPResponseException as error:
        if 400 <= error.code < 500:
            raise ToolError(f"the mail server deferred: {error.code} {error.message}") from error
        raise PermanentToolError(
            f"the mail server refused: {error.code} {error.message}"
        ) from error
    except aiosmtplib.SMTPNotSupported as error:
        raise PermanentToolError(f"the mail server does not support this: {error}") from error
    except (aiosmtplib.SMTPException, OSError) as error:
        raise ToolError(f"cannot reach the mail server {host}: {error}") from error
    recipients = [address for _, address in getaddresses([*to, *(cc or [])])]
    return {
        "message_id": message["Message-ID"],
        "accepted": [r for r in recipients if r not in refused],
        "refused": {r: f"{response.code} {response.message}" for r, response in refused.items()},
    }


def compose(
    context: EmailContext,
    *,
    sender: str,
    to: list[str],
    cc: list[str],
    subject: str,
    text: str,
    html: str | None,
    attachments: list[str],
) -> EmailMessage:
    """The message `email.send` sends for this step (same key, same Message-ID)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id(context.key, sender)
    message["X-Gateway-Idempotency-Key"] = context.key
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for name in attachments:
        if name not in context.files:
            known = ", ".join(sorted(context.files)) or "none"
            raise PermanentToolError(f"no file named {name!r} in this run (files: {known})")
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        maintype, subtype = content_type.split("/", 1)
        message.add_attachment(
            context.files[name],
            maintype=maintype,
            subtype=subtype,
            filename=PurePosixPath(name).name,
        )
    return message


def message_id(key: str, sender: str) -> str:
    """`<gw-<hash of key>@<sender's domain>>`: stable across retries of one step."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "gateway.invalid"
    return f"<gw-{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"
