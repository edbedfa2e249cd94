"""Jira's issue and project key formats, and the project a key belongs to.

`handlers.jira` holds its arguments to them and the assistant policy's `projects:` limit reads
keys with them: one grammar, below both, so the engine never imports a handler.
"""

from __future__ import annotations

import re

# Jira's key formats: a project key is an upper-case letter, then upper-case letters, digits or
# underscores; an issue key is a project key, a dash and ASCII digits. The `jira` client pastes a
# key into the URL path as is, so anything else (`OPS-1/../../rest/auth/1/session#`) could
# send the gateway's credentials to another endpoint: the schema refuses it before any call.
PROJECT_KEY = r"^[A-Z][A-Z0-9_]*$"
ISSUE_KEY = r"^[A-Z][A-Z0-9_]*-[0-9]+$"


def project_of(key: str) -> str | None:
    """The project a key belongs to: a project key's own, an issue key's part before the
    dash; None for anything that is neither."""
    if re.fullmatch(PROJECT_KEY, key):
        return key
    if re.fullmatch(ISSUE_KEY, key):
        return key.rpartition("-")[0]
    return None
