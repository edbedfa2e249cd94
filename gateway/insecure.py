"""Settings fine on a laptop and dangerous on a network, and credentials kept out of output.

`gateway check` warns about every `Finding`; `gateway serve` refuses to listen beyond loopback
with any unless given `--insecure`. Secrets are compared here, never shown; `shown_url` hides
the password of a URL wherever one is printed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from gateway.config import Config

# Parsed as the store parses URLs; shown here to the CLI, beside the rest of what keeps secrets.
from gateway.store.database import shown_url as shown_url

# An admin token shorter than this is weak: `openssl rand -hex 24` gives 48 characters.
MIN_ADMIN_TOKEN_LENGTH = 32

# Secrets published as test values: the providers' documentation examples and this project's
# fixtures (../shared/fixtures/webhooks/SECRETS.md), the example gateway.yaml's fallbacks.
# Anyone can sign a request with them.
PUBLISHED_TEST_SECRETS = frozenset(
    {
        "It's a Secret to Everybody",  # GitHub's documentation
        "shpss_test_gateway_secret",
        "whsec_test_gateway_secret",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # Standard Webhooks' documentation
        "gitlab-test-secret-token",
        "wc_test_webhook_secret",
        "intercom_test_client_secret",
        "circleci_test_signing_secret",
        "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==",  # Zendesk's test signing secret
        "HRkRd4BeOAoUkfZr-mhauJT64rvBASlJRoIyPsd3zeA=",  # Zendesk's documentation example
        "8f742231b10e8888abcd99yyyzzz85a5",  # Slack's documentation
        "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK",  # go-pagerduty tests
        "jenkins:notify-secret",
    }
)
# Words of a value meant to be replaced ("change-me", "CHANGEME", "your-token-here").
PLACEHOLDERS = ("changeme", "replaceme", "yoursecret", "yourtoken", "placeholder")


@dataclass(frozen=True)
class Finding:
    """One insecure setting: the field that holds it, and what is wrong (never the value)."""

    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


def findings(config: Config) -> list[Finding]:
    """Every source secret that is a published test secret or a placeholder, and an admin or
    MCP client token that is one of those or shorter than MIN_ADMIN_TOKEN_LENGTH."""
    found: list[Finding] = []
    for name, source in config.sources.items():
        held = [("secret", source.secret)] + [
            (f"secrets.{i}", secret) for i, secret in enumerate(source.secrets)
        ]
        for field, value in held:
            if value and (problem := _known(value)):
                found.append(Finding(f"sources.{name}.{field}", problem))
    tokens = [("admin_token", config.admin_token)]
    if config.mcp_server is not None:
        clients = config.mcp_server.clients.items()
        tokens += [(f"mcp_server.clients.{name}.token", c.token) for name, c in clients]
    for field, token in tokens:
        if token and (problem := _weak(token)):
            found.append(Finding(field, problem))
    return found


def _weak(token: str) -> str | None:
    """Why a bearer token (the admin API's, an MCP client's) is weak, or None."""
    problem = _known(token)
    if problem is None and len(token) < MIN_ADMIN_TOKEN_LENGTH:
        problem = (
            f"shorter than {MIN_ADMIN_TOKEN_LENGTH} characters "
            "(make one with `openssl rand -hex 24`)"
        )
    return problem


def refused(config: Config, host: str, *, insecure: bool) -> list[Finding]:
    """What stops `gateway serve` from listening on `host`: nothing on loopback or with
    `--insecure`, else every finding."""
    if insecure or is_loopback(host):
        return []
    return findings(config)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _known(value: str) -> str | None:
    if value in PUBLISHED_TEST_SECRETS:
        return "a published test secret: anyone can sign with it"
    letters = re.sub(r"[^a-z]", "", value.lower())
    if any(word in letters for word in PLACEHOLDERS):
        return "a placeholder, not a secret"
    return None
