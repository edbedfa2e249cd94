"""The statement `sql.query` runs, read as text: one SELECT, its comments blanked, its end found.

Only for clear messages and for nesting the statement in another; read-only is the database's job.
"""

from __future__ import annotations

import re

from gateway.tools import PermanentToolError


def check_single_select(sql: str) -> None:
    """Refuse, with a message for the model, what is not one SELECT: the database refuses
    it too, this only says why in plain words."""
    statements = [s for s in _split(strip_comments(sql)) if s.strip()]
    if not statements:
        raise PermanentToolError("the query is empty")
    if len(statements) > 1:
        raise PermanentToolError("one statement only: remove the `;` between statements")
    first = statements[0].split(None, 1)[0].lower()
    if first not in ("select", "with"):
        raise PermanentToolError(f"only SELECT queries are allowed, not {first.upper()}")


def body(sql: str) -> str:
    """The statement without a final `;` (and what follows it), to nest it in another."""
    return sql[: len(strip_comments(sql).rstrip().rstrip(";"))]


def strip_comments(sql: str) -> str:
    """The query with its comments blanked out (string literals kept): same length, so a
    position in it is the same position in the query."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in ("'", '"'):
            end = i + 1
            while end < n:
                if sql[end] == c:
                    if end + 1 < n and sql[end + 1] == c:  # doubled quote inside the literal
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            end = n if newline < 0 else newline
            out.append(" " * (end - i))
            i = end
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            end = n if close < 0 else close + 2
            out.append(re.sub(r"[^\n]", " ", sql[i:end]))
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _split(sql: str) -> list[str]:
    """Statements separated by `;` outside quotes (comments already stripped)."""
    parts: list[str] = []
    current: list[str] = []
    quote: str | None = None
    for c in sql:
        if quote:
            current.append(c)
            if c == quote:
                quote = None  # a doubled quote reopens at once: same effect
        elif c in ("'", '"'):
            quote = c
            current.append(c)
        elif c == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts
