"""Item 9: what a rule's template puts into `email.send`'s `html` is escaped.

A Shopify order whose line-item title carries markup goes through the shipped example rule
(rules/shop.yaml) to a real SMTP server (aiosmtpd); the rule tester must show the same HTML
the worker sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.api.dryrun import raw_event, try_rules
from gateway.config import Config
from gateway.rules.loader import load as load_rules
from gateway.testing.smtp import SmtpServer
from tests.fixtures import load, requires_fixtures
from tests.live import live_gateway

pytestmark = [requires_fixtures]

RULES = Path(__file__).resolve().parents[2] / "rules"
TRACKER = "<img src=http://evil/track>"
LINK = '<a href="http://evil/">Claim your refund</a>'


def injected_order() -> dict[str, Any]:
    """The Shopify order fixture (#9999, 1575.90 USD), its line items titled with markup."""
    order: dict[str, Any] = orjson.loads(load("shopify", "orders_create").body)
    order["line_items"][0]["title"] = TRACKER
    order["line_items"][1]["title"] = LINK
    return order


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def html_of_the_sent_mail(tmp_path: Path, smtp: SmtpServer) -> tuple[str, str, Any]:
    """Deliver the injected order through rules/shop.yaml: (html part, text part, the step)."""
    order = injected_order()
    rules = (RULES / "shop.yaml").read_text()
    with live_gateway(tmp_path, rules, handlers={"email": smtp.settings()}) as gw:
        gw.post_order("injected", line_items=order["line_items"])
        [run] = gw.finished_runs(1)
        [step] = gw.steps(run.id)
    assert run.status == "succeeded"
    [delivery] = smtp.deliveries
    html = delivery.message.get_body(("html",))
    text = delivery.message.get_body(("plain",))
    assert html is not None and text is not None
    return html.get_content(), text.get_content(), step


def tried(config: Config, tmp_path: Path, html: str, **changes: Any) -> dict[str, Any]:
    """What the rule tester says `email.send` would get, for the injected order."""
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "mail.yaml").write_text(
        "- name: mail\n"
        "  on: {source: shop, event: orders/create}\n"
        "  actions:\n"
        "    - email.send:\n"
        "        to: [sales@example.com]\n"
        "        subject: 'Order {{ payload.line_items[0].title }}'\n"
        "        text: 'Item: {{ payload.line_items[0].title }}'\n"
        f"        html: {orjson.dumps(html).decode()}\n"
    )
    event = raw_event(config, "shop", "orders/create", {**injected_order(), **changes})
    [rule] = try_rules(load_rules(tmp_path / "rules"), event).rules
    [action] = rule.actions
    assert action.error is None, action.error
    arguments: dict[str, Any] = action.arguments
    return arguments


def test_markup_in_a_line_item_title_reaches_the_mail_as_text(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    html, text, _ = html_of_the_sent_mail(tmp_path, smtp)

    assert "<img" not in html and "<a " not in html
    assert "&lt;img src=http://evil/track&gt;" in html
    assert "&lt;a href=&#34;http://evil/&#34;&gt;Claim your refund&lt;/a&gt;" in html
    assert "<b>#9999</b>" in html  # the markup the rule itself writes is kept
    assert "&times;" in html
    assert TRACKER in text  # the plain-text part is text: nothing to escape


def test_the_rule_tester_shows_the_escaped_html_the_worker_sends(
    tmp_path: Path, smtp: SmtpServer, config: Config
) -> None:
    (tmp_path / "live").mkdir()
    _, _, step = html_of_the_sent_mail(tmp_path / "live", smtp)
    event = raw_event(config, "shop", "orders/create", injected_order())

    tester = try_rules(load_rules(RULES), event).rules

    [action] = next(r for r in tester if r.rule == "big-order-to-sales").actions

    assert action.arguments["html"] == step.arguments["html"]
    assert "&lt;img src=http://evil/track&gt;" in action.arguments["html"]


def test_a_lone_expression_in_html_is_escaped(config: Config, tmp_path: Path) -> None:
    arguments = tried(config, tmp_path, "{{ payload.line_items[0].title }}")

    assert arguments["html"] == "&lt;img src=http://evil/track&gt;"


def test_safe_lets_a_value_through_as_markup_on_purpose(config: Config, tmp_path: Path) -> None:
    arguments = tried(config, tmp_path, "<p>{{ payload.line_items[0].title | safe }}</p>")

    assert arguments["html"] == f"<p>{TRACKER}</p>"


def test_arguments_that_are_not_html_are_not_escaped(config: Config, tmp_path: Path) -> None:
    arguments = tried(config, tmp_path, "<p>{{ payload.name }}</p>")

    assert arguments["subject"] == f"Order {TRACKER}"
    assert arguments["text"] == f"Item: {TRACKER}"
    assert arguments["html"] == "<p>#9999</p>"
