"""Credentials kept out of output: a URL is printed or logged only with its password hidden.

`shown_url` is used wherever the gateway shows a URL that may carry one (the store's).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from sqlalchemy.engine import make_url

# Query parameters that carry a credential in a database URL (libpq's `?password=`).
SECRET_PARAMETER = re.compile(r"pass|secret|token|key", re.I)
HIDDEN = "***"


def shown_url(url: str) -> str:
    """`url` as it may be printed or logged: its password (and credential parameters) as ***."""
    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads (a bad port): hide up to the last `@`
        return re.sub(r"(//[^/:@]*):.*@", r"\1:***@", url)
    hidden = {k: HIDDEN for k in parsed.query if SECRET_PARAMETER.search(k)}
    shown = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return shown.replace(quote(HIDDEN), HIDDEN)  # rendering quoted the query's stars
