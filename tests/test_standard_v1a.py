"""Standard Webhooks `v1a`: Ed25519 signatures checked with `whpk_` keys, beside `v1` HMAC.

The vectors are made here with `cryptography` from a fixed seed and the spec's own example
message (spec/standard-webhooks.md, "Signature scheme"): the signed content is
`{msg_id}.{timestamp}.{payload}`, the signature base64 after `v1a,`, several space separated.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

import gateway.ingest.providers  # noqa: F401  (fills the registry)
from gateway import cli
from gateway.config import SourceConfig
from gateway.errors import ConfigError, SignatureInvalid
from gateway.ingest.provider import PROVIDERS, Provider
from tests.live import live_gateway
from tests.test_send_new_id import RULES

# The spec's example message, minified as it says senders should send it.
MSG_ID, TIMESTAMP = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", 1674087231
BODY = (
    b'{"type":"contact.created","timestamp":"2022-11-03T20:26:10.344522Z",'
    b'"data":{"id":"1f81eb52-5198-4599-803e-771906343485"}}'
)
HMAC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def keypair(seed: int) -> tuple[Ed25519PrivateKey, str, str]:
    """A fixed key from a one-byte-repeated seed; its `whsk_` (seed) and `whpk_` forms."""
    key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    whsk = "whsk_" + base64.b64encode(key.private_bytes_raw()).decode()
    whpk = "whpk_" + base64.b64encode(key.public_key().public_bytes_raw()).decode()
    return key, whsk, whpk


def v1a(key: Ed25519PrivateKey, body: bytes = BODY, msg_id: str = MSG_ID) -> str:
    return "v1a," + base64.b64encode(key.sign(f"{msg_id}.{TIMESTAMP}.".encode() + body)).decode()


def headers(signature: str) -> dict[str, str]:
    return {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP),
        "webhook-signature": signature,
    }


def provider(*secrets: str) -> Provider:
    return PROVIDERS["standard"](
        SourceConfig.model_validate({"provider": "standard", "secrets": list(secrets)})
    )


KEY, WHSK, WHPK = keypair(1)
OLD_KEY, OLD_WHSK, OLD_WHPK = keypair(2)


def test_a_v1a_signature_verifies_with_the_whpk_key() -> None:
    signature = v1a(KEY)
    # The spec's example v1a entry is 88 base64 characters: a 64-byte Ed25519 signature.
    assert len(signature.removeprefix("v1a,")) == 88

    provider(WHPK).verify(headers(signature), BODY, TIMESTAMP)


@pytest.mark.parametrize("where", ["body", "msg_id", "signature"])
def test_one_changed_byte_is_refused(where: str) -> None:
    body, sent = BODY, headers(v1a(KEY))
    if where == "body":
        body = BODY.replace(b"contact.created", b"contact.createD")
    elif where == "msg_id":
        sent["webhook-id"] = MSG_ID[:-1] + "X"
    else:
        raw = bytearray(base64.b64decode(sent["webhook-signature"][4:]))
        raw[0] ^= 1
        sent["webhook-signature"] = "v1a," + base64.b64encode(bytes(raw)).decode()

    with pytest.raises(SignatureInvalid, match="does not match"):
        provider(WHPK).verify(sent, body, TIMESTAMP)


def test_a_signature_by_another_key_is_refused() -> None:
    with pytest.raises(SignatureInvalid, match="does not match"):
        provider(WHPK).verify(headers(v1a(OLD_KEY)), BODY, TIMESTAMP)


def test_rotation_two_keys_accept_either_and_a_header_carrying_both() -> None:
    rotating = provider(WHPK, OLD_WHPK)
    for signature in (v1a(KEY), v1a(OLD_KEY), f"{v1a(OLD_KEY)} {v1a(KEY)}"):
        rotating.verify(headers(signature), BODY, TIMESTAMP)
    # After rotation the old key is gone: its signature alone no longer passes.
    with pytest.raises(SignatureInvalid):
        provider(WHPK).verify(headers(v1a(OLD_KEY)), BODY, TIMESTAMP)


def test_v1_and_v1a_keys_side_by_side_each_check_their_own_entries() -> None:
    hmac_only = provider(HMAC_SECRET).sign(BODY, {"webhook-id": MSG_ID}, TIMESTAMP)
    v1 = hmac_only["webhook-signature"]
    both = provider(HMAC_SECRET, WHPK)

    both.verify(headers(v1), BODY, TIMESTAMP)
    both.verify(headers(v1a(KEY)), BODY, TIMESTAMP)
    both.verify(headers(f"{v1} {v1a(KEY)}"), BODY, TIMESTAMP)  # the spec's example shape
    # A v1 source ignores v1a entries it holds no key for, and says which entry it wanted.
    with pytest.raises(SignatureInvalid, match="no v1,"):
        provider(HMAC_SECRET).verify(headers(v1a(KEY)), BODY, TIMESTAMP)
    with pytest.raises(SignatureInvalid, match="no v1a,"):
        provider(WHPK).verify(headers(v1), BODY, TIMESTAMP)


def test_a_v1a_entry_that_is_not_base64_is_refused_not_raised() -> None:
    with pytest.raises(SignatureInvalid, match="does not match"):
        provider(WHPK).verify(headers("v1a,@@not-base64@@"), BODY, TIMESTAMP)


def test_signing_with_whsk_matches_an_independent_signature() -> None:
    # Ed25519 is deterministic: the gateway's signature equals cryptography's own.
    signed = provider(WHSK).sign(BODY, {"webhook-id": MSG_ID}, TIMESTAMP)

    assert signed == headers(v1a(KEY))
    provider(WHPK).verify(signed, BODY, TIMESTAMP)


def test_a_64_byte_whsk_key_seed_and_public_half_signs_the_same() -> None:
    whole = base64.b64encode(KEY.private_bytes_raw() + KEY.public_key().public_bytes_raw())
    assert provider("whsk_" + whole.decode()).sign(BODY, {"webhook-id": MSG_ID}, TIMESTAMP) == (
        headers(v1a(KEY))
    )


@pytest.mark.parametrize(
    "secret",
    [
        "whpk_" + base64.b64encode(b"x" * 31).decode(),  # one byte short of a public key
        "whsk_" + base64.b64encode(b"x" * 48).decode(),  # neither a seed nor seed + public
        # A 64-byte key whose public half belongs to another seed.
        "whsk_" + base64.b64encode(KEY.private_bytes_raw() + b"\0" * 32).decode(),
        "whpk_not base64!",
    ],
)
def test_check_refuses_a_malformed_ed25519_key_without_echoing_it(secret: str) -> None:
    problems = PROVIDERS["standard"].check(
        SourceConfig.model_validate({"provider": "standard", "secret": secret})
    )

    assert any("whpk_" in p and "whsk_" in p for p in problems)
    assert not any(secret in p for p in problems)


def test_check_accepts_each_key_form() -> None:
    source = SourceConfig.model_validate({"provider": "standard", "secrets": [HMAC_SECRET, WHPK]})
    assert PROVIDERS["standard"].check(source) == []


def test_a_source_holding_only_public_keys_cannot_sign() -> None:
    with pytest.raises(ConfigError, match="whsk_"):
        provider(WHPK).sign(BODY, {}, TIMESTAMP)


def test_gateway_send_signs_with_whsk_and_the_gateway_verifies_with_whpk(tmp_path: Path) -> None:
    fixture = tmp_path / "contact.created.json"
    fixture.write_bytes(BODY)
    sender = tmp_path / "sender.yaml"
    sender.write_text(
        yaml.safe_dump({"sources": {"hooks": {"provider": "standard", "secret": WHSK}}})
    )
    receiving = {"hooks": {"provider": "standard", "secrets": [OLD_WHPK, WHPK]}}
    with live_gateway(tmp_path, RULES, sources=receiving) as gw:

        def send(config: Path) -> tuple[int, str]:
            result = CliRunner().invoke(
                cli.app,
                ["send", str(fixture), "--source", "hooks", "--url", f"{gw.url}/hooks/hooks",
                 "-c", str(config)],
            )  # fmt: skip
            return result.exit_code, result.output

        sent, again = send(sender), send(sender)
        # The receiving config holds only public keys: it cannot be used to send.
        refused = send(tmp_path / "gateway.yaml")

    assert sent[0] == 0 and '"duplicate":false' in sent[1]
    assert again[0] == 0  # a fresh message id each send: a new event, verified again
    assert refused[0] == 1 and "whsk_" in refused[1]


@pytest.mark.parametrize("token", [WHPK, WHSK])
def test_gitlab_signing_token_stays_an_hmac_secret(token: str) -> None:
    # GitLab signs v1 (HMAC) only: an Ed25519 key there is a mistake, said by `gateway check`.
    problems = PROVIDERS["gitlab"].check(
        SourceConfig.model_validate({"provider": "gitlab", "signing_token": token})
    )
    assert problems == ["signing_token must be base64, optionally after `whsec_`"]
