"""The email.send tool against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.testing.smtp import SmtpServer
from gateway.tools import PermanentToolError, ToolError
from tests.calls import call_tool


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


async def send(
    settings: dict[str, Any],
    key: str = "run-1/step-1",
    files: dict[str, bytes] | None = None,
    **arguments: Any,
) -> Any:
    arguments = {"subject": "Report", "text": "Hi", **arguments}
    return await call_tool("email.send", settings, arguments, key=key, files=files or {})


async def test_mail_with_text_html_and_attachment_arrives(smtp: SmtpServer) -> None:
    result = await send(
        smtp.settings(),
        files={"out/report.csv": b"a,b\n1,2\n"},
        to=["ops@example.com"],
        cc=["boss@example.com"],
        html="<p>Hi</p>",
        attachments=["out/report.csv"],
    )

    (delivery,) = smtp.deliveries
    assert delivery.recipients == ["ops@example.com", "boss@example.com"]
    assert result["accepted"] == ["ops@example.com", "boss@example.com"]
    message = delivery.message
    assert message["Subject"] == "Report"
    assert message["Message-ID"] == result["message_id"]
    assert message["X-Gateway-Idempotency-Key"] == "run-1/step-1"
    assert message.get_body(("plain",)).get_content().strip() == "Hi"  # type: ignore[union-attr]
    assert message.get_body(("html",)).get_content().strip() == "<p>Hi</p>"  # type: ignore[union-attr]
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "report.csv"
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_content() == "a,b\n1,2\n"


async def test_message_id_is_the_same_when_the_step_is_sent_again(smtp: SmtpServer) -> None:
    first = await send(smtp.settings(), key="run-7/step-2", to=["a@example.com"])
    again = await send(smtp.settings(), key="run-7/step-2", to=["a@example.com"])
    other = await send(smtp.settings(), key="run-7/step-3", to=["a@example.com"])

    assert first["message_id"] == again["message_id"] != other["message_id"]
    assert first["message_id"].endswith("@example.com>")
    assert [m["Message-ID"] for m in smtp.messages][:2] == [first["message_id"]] * 2


async def test_server_down_is_retryable_and_the_retry_is_delivered(smtp: SmtpServer) -> None:
    with smtp.down(), pytest.raises(ToolError) as failure:
        await send(smtp.settings(), to=["a@example.com"])
    assert failure.value.retryable

    await send(smtp.settings(), to=["a@example.com"])
    assert len(smtp.messages) == 1


async def test_temporary_smtp_reply_is_retryable(smtp: SmtpServer) -> None:
    smtp.reply_next("451 4.3.0 Try again later")

    with pytest.raises(ToolError) as failure:
        await send(smtp.settings(), to=["a@example.com"])
    assert failure.value.retryable


async def test_permanent_smtp_reply_is_permanent(smtp: SmtpServer) -> None:
    smtp.reply_next("554 5.7.1 Message rejected")

    with pytest.raises(PermanentToolError, match="554"):
        await send(smtp.settings(), to=["a@example.com"])


async def test_unknown_attachment_is_permanent_and_nothing_is_sent(smtp: SmtpServer) -> None:
    with pytest.raises(PermanentToolError, match=r"missing\.pdf"):
        await send(smtp.settings(), to=["a@example.com"], attachments=["missing.pdf"])
    assert smtp.messages == []


async def test_starttls_with_a_trusted_certificate(tmp_path: Path) -> None:
    pytest.importorskip("cryptography", reason="generating a test certificate needs cryptography")
    certificate, key = _self_signed_certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate, key)

    with SmtpServer(tls_context=server_context, require_starttls=True) as smtp:
        await send(smtp.settings(starttls=True, ca_file=str(certificate)), to=["a@example.com"])
        (delivery,) = smtp.deliveries

    assert delivery.tls


def _self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_path = folder / "smtp.pem"
    key_path = folder / "smtp.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_path, key_path
