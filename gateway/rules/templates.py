"""The one expression language for conditions and arguments: sandboxed, immutable Jinja2.

Templates cannot reach Python internals, cannot mutate what they see, and fail loudly on an
undefined name. A string that is exactly `{{ expression }}` evaluates to the native value,
except in an argument a tool marks as HTML, which is rendered as text with autoescape. Jinja2
is imported by the first template compiled (1.7 MB resident a gateway without any need not keep).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

# Defined in gateway.errors (the whole tree in one module), imported from here too.
from gateway.errors import TemplateError as TemplateError

if TYPE_CHECKING:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

_WHOLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


@functools.cache
def environment(*, html: bool = False) -> ImmutableSandboxedEnvironment:
    """The one sandboxed environment; for HTML arguments, one with autoescape: what an
    expression inserts (a payload's text) is escaped, the markup the rule writes around it is
    not, and `|safe` lets a trusted value through on purpose."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=html)


def _is_expression(text: str) -> re.Match[str] | None:
    match = _WHOLE.match(text)
    # `{{ a }} and {{ b }}` also matches the pattern but is a template, not one expression.
    if match and "{{" not in match.group(1) and "}}" not in match.group(1):
        return match
    return None


def check(text: str) -> str | None:
    """Compile without evaluating: the syntax error message, or None if the text is valid."""
    from jinja2 import TemplateSyntaxError

    try:
        match = _is_expression(text)
        if match:
            environment().compile_expression(match.group(1))
        else:
            environment().from_string(text)
    except TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message}"
    return None


@functools.lru_cache(maxsize=4096)
def _compiled(text: str, html: bool = False) -> Callable[..., Any]:
    """Rules are few and their templates fixed: compile each text once."""
    if html:
        # Never the native-value shortcut: a compiled expression is not autoescaped.
        return environment(html=True).from_string(text).render
    match = _is_expression(text)
    if match:
        return environment().compile_expression(match.group(1), undefined_to_none=False)
    return environment().from_string(text).render


def evaluate(text: str, scope: Mapping[str, Any], *, html: bool = False) -> Any:
    """Render `text` in `scope`; a lone `{{ expression }}` gives its native value, unless
    `html`, where the result is always text with every inserted value escaped."""
    from jinja2 import Undefined

    try:
        result = _compiled(text, html)(**scope)
        if isinstance(result, Undefined):
            # A lone `{{ payload.missing }}` yields an Undefined instead of raising: make it
            # fail like every other use of an undefined name.
            str(result)
        return result
    except TemplateError:
        raise
    except Exception as exc:  # undefined names, sandbox refusals, type errors in expressions
        raise TemplateError(f"{type(exc).__name__}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _names(text: str) -> frozenset[str] | None:
    from jinja2 import TemplateSyntaxError, meta

    try:
        return frozenset(meta.find_undeclared_variables(environment().parse(text)))
    except TemplateSyntaxError:
        return None  # loading refuses such a rule; if one got here, say it may read anything


def reads(value: Any, name: str) -> bool:
    """Whether the templates in a value (strings, dicts and lists of them) may read `name` of
    the scope (`payload`, `results`...). A sandboxed template reaches the context only by
    spelling a name, so one that does not spell it cannot read it."""
    if isinstance(value, str):
        if not is_template(value):
            return False
        found = _names(value)
        return found is None or name in found
    if isinstance(value, dict):
        return any(reads(item, name) for item in value.values())
    if isinstance(value, list):
        return any(reads(item, name) for item in value)
    return False


def is_template(value: Any) -> bool:
    """Whether a value (or any string inside it) has something to render."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(is_template(v) for v in value.values())
    if isinstance(value, list):
        return any(is_template(v) for v in value)
    return False


def render(value: Any, scope: Mapping[str, Any], *, html: bool = False) -> Any:
    """Render every string inside a value (dicts and lists recursively)."""
    if isinstance(value, str):
        return evaluate(value, scope, html=html) if is_template(value) else value
    if isinstance(value, dict):
        return {k: render(v, scope, html=html) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope, html=html) for v in value]
    return value


def render_arguments(
    arguments: Mapping[str, Any], scope: Mapping[str, Any], html: Collection[str] = ()
) -> dict[str, Any]:
    """An action's arguments for this event, those named in `html` with autoescape (a tool's
    `html_arguments`). The worker and the rule tester both render through this."""
    return {name: render(value, scope, html=name in html) for name, value in arguments.items()}


def truthy(value: Any) -> bool:
    """A rendered condition's truth: native values as Python sees them, text as written."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    if value is None:
        return False
    # An Undefined is only ever the result of rendering: jinja2 is imported by then.
    jinja2 = sys.modules.get("jinja2")
    if jinja2 is not None and isinstance(value, jinja2.StrictUndefined):
        return False
    return bool(value)
