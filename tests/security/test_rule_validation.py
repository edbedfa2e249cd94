"""One validation path for rules: whatever `gateway check` refuses, every reload refuses too.

A corpus of broken rule sets goes through `gateway check` (the CLI), the admin API's reload and
the dashboard's reload on one running gateway; each must name the same problems and change
nothing. SIGHUP reloads `gateway serve` the same way, and a string `approve` cannot slip past.
"""

from __future__ import annotations

import html
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from gateway import cli
from gateway import config as config_module
from gateway.app import create_app
from gateway.rules.model import Rule
from gateway.testing.fake_llm import ScriptedModel, call
from gateway.testing.server import serve_in_thread
from gateway.testing.smtp import SmtpServer
from tests.fixtures import requires_fixtures
from tests.live import live_gateway
from tests.process import GatewayProcess

TOKEN = "rule-validation-admin-token-0123456789"
VALID = """\
- name: base
  on: {source: shop, event: orders/create}
  actions:
    - log.record: {message: "order {{ payload.name }}"}
- name: nightly
  schedule: {cron: "0 3 * * *"}
  actions:
    - log.record: {message: nightly}
"""


def assistant_rule(lines: str, model: str = "default", tools: str = "[email.send]") -> str:
    return (
        "- name: mailer\n"
        "  on: {source: shop}\n"
        "  assistant:\n"
        f"    model: {model}\n"
        "    prompt: hi\n"
        f"    tools: {tools}\n" + lines
    )


# Each broken rule set (written beside the valid one) and words its problem line must hold.
CORPUS = {
    "string-approve": (
        assistant_rule('    policy: {email.send: {approve: "true"}}\n'),
        "approve must be true or false",
    ),
    "unknown-model-profile": (assistant_rule("", model="nosuch"), "no profile named 'nosuch'"),
    "unknown-action-tool": (
        "- name: ticket\n  on: {source: shop}\n  actions:\n"
        "    - jira.create_ticket: {project: OPS, summary: hi}\n",
        "unknown tool 'jira.create_ticket'",
    ),
    "unknown-assistant-tool": (
        assistant_rule("", tools="[email.sned]"),
        "unknown tool 'email.sned'",
    ),
    "policy-on-a-tool-not-allowed": (
        assistant_rule("    policy: {http.request: {url: {hosts: [api.example.com]}}}\n"),
        "not in the tools allowlist",
    ),
    "policy-on-an-unknown-argument": (
        assistant_rule("    policy: {email.send: {too: [a@example.com]}}\n"),
        "email.send has no such argument",
    ),
    "policy-with-an-empty-domain-list": (
        assistant_rule("    policy: {email.send: {to: {domains: []}}}\n"),
        "domains must be a non-empty list",
    ),
    "bad-cron": (
        "- name: tick\n  schedule: {cron: '61 * * * *'}\n  actions:\n"
        "    - log.record: {message: hi}\n",
        "schedule.cron",
    ),
    "interval-too-long": (
        "- name: tick\n  schedule: {every: 99999999999999d}\n  actions:\n"
        "    - log.record: {message: hi}\n",
        "schedule.every",
    ),
    "unknown-time-zone": (
        "- name: tick\n  schedule: {cron: '0 3 * * *', timezone: Mars/Olympus}\n  actions:\n"
        "    - log.record: {message: hi}\n",
        "unknown zone 'Mars/Olympus'",
    ),
    "bad-template": (
        "- name: cond\n  on: {source: shop}\n  when: '{{ payload.total > }}'\n  actions:\n"
        "    - log.record: {message: hi}\n",
        "template syntax error",
    ),
    "unknown-argument": (
        "- name: colour\n  on: {source: shop}\n  actions:\n"
        "    - log.record: {message: hi, colour: red}\n",
        "log.record has no argument 'colour'",
    ),
    "missing-argument": (
        "- name: mail\n  on: {source: shop}\n  actions:\n"
        "    - email.send: {to: [a@example.com], subject: hi}\n",
        "email.send needs argument 'text'",
    ),
    "duplicate-rule-name": (
        "- name: base\n  on: {source: ci}\n  actions:\n    - log.record: {message: again}\n",
        "name already used",
    ),
    "on-and-schedule": (
        "- name: both\n  on: {source: shop}\n  schedule: {every: 1h}\n  actions:\n"
        "    - log.record: {message: hi}\n",
        "exactly one of `on` or `schedule`",
    ),
    "invalid-yaml": ("- name: open\n  on: {source: shop\n", "invalid YAML"),
}


@dataclass
class Running:
    """A gateway serving on loopback, its config file, and a logged-in dashboard session."""

    config: Path
    rules_dir: Path
    app: Any
    client: httpx2.Client
    cookie: str

    def api_reload(self) -> tuple[int, list[str]]:
        """`POST /api/rules/reload`: its status and the problems it answers with."""
        response = self.client.post(
            "/api/rules/reload", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        return response.status_code, response.json().get("problems", [])

    def dashboard_reload(self) -> tuple[int, list[str]]:
        """The Rules page's reload button: its status and the problems the page lists."""
        page = self.client.get("/ui/rules", headers={"Cookie": self.cookie})
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None, page.text
        response = self.client.post(
            "/ui/rules/reload", data={"csrf": csrf.group(1)}, headers={"Cookie": self.cookie}
        )
        shown = re.findall(r'<li class="mono">(.*?)</li>', response.text, re.S)
        return response.status_code, [html.unescape(p) for p in shown]

    def reload(self, entry: str) -> tuple[int, list[str]]:
        return self.api_reload() if entry == "api" else self.dashboard_reload()

    def loaded(self) -> tuple[Any, Any, dict[str, Any]]:
        """What a reload replaces: the app's rules, the worker's, the scheduler's."""
        state = self.app.state.gateway
        return state.rules, state.worker.rules, dict(state.scheduler.rules)


def write_gateway(directory: Path, **keys: Any) -> Path:
    """A gateway.yaml in `directory` with the admin token on, and `rules/` holding VALID."""
    rules_dir = directory / "rules"
    rules_dir.mkdir()
    (rules_dir / "base.yaml").write_text(VALID)
    config = directory / "gateway.yaml"
    document = {
        "store": f"sqlite:///{directory / 'gateway.db'}",
        "admin_token": TOKEN,
        "rules": str(rules_dir),
        **keys,
    }
    config.write_text(yaml.safe_dump(document))
    return config


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    directory = tmp_path_factory.mktemp("reload")
    models = {"default": {"api": "chat", "base_url": "http://127.0.0.1:9/v1", "model": "m"}}
    config = write_gateway(directory, models=models)
    app = create_app(config_module.load(config, environ={}))
    with serve_in_thread(app) as url, httpx2.Client(base_url=url, timeout=30) as client:
        login = client.post("/ui/login", data={"token": TOKEN, "next": "/ui/rules"})
        assert login.status_code == 303, login.text
        cookie = login.headers["set-cookie"].split(";")[0]
        yield Running(config, directory / "rules", app, client, cookie)


@pytest.fixture
def broken(running: Running, request: pytest.FixtureRequest) -> Iterator[str]:
    """Write the corpus entry named by the test's `case` beside the valid rules; remove it."""
    text, words = CORPUS[request.node.callspec.params["case"]]
    path = running.rules_dir / "broken.yaml"
    path.write_text(text)
    try:
        yield words
    finally:
        path.unlink()


def check_problems(config: Path) -> tuple[int, list[str]]:
    """`gateway check`'s exit status and its problem lines, as printed."""
    result = CliRunner().invoke(cli.app, ["check", "--config", str(config)])
    lines = [line[4:] for line in result.output.splitlines() if line.startswith("  - ")]
    return result.exit_code, lines


@pytest.mark.parametrize("case", list(CORPUS))
def test_gateway_check_reports_each_broken_rule_set(
    running: Running, broken: str, case: str
) -> None:
    code, problems = check_problems(running.config)

    assert code == 1
    assert any(broken in p for p in problems), problems


@pytest.mark.parametrize("case", list(CORPUS))
@pytest.mark.parametrize("entry", ["api", "dashboard"])
def test_reload_refuses_with_the_problems_gateway_check_reports(
    running: Running, broken: str, entry: str, case: str
) -> None:
    _, expected = check_problems(running.config)

    status, problems = running.reload(entry)

    assert status == 422
    assert problems == expected


@pytest.mark.parametrize("case", list(CORPUS))
def test_refused_reload_leaves_rules_worker_and_scheduler_as_they_were(
    running: Running, broken: str, case: str
) -> None:
    rules, worker_rules, schedules = running.loaded()

    running.api_reload()
    running.dashboard_reload()

    after = running.loaded()
    assert after[0] is rules
    assert after[1] is worker_rules
    assert after[2] == schedules


def test_valid_rule_set_is_reloaded_by_the_api(running: Running) -> None:
    extra = running.rules_dir / "extra.yaml"
    extra.write_text(
        "- name: extra\n  on: {source: ci}\n  actions:\n    - log.record: {message: x}\n"
    )
    try:
        assert running.api_reload() == (200, [])
        assert running.app.state.gateway.worker.rules.by_name.keys() == {"base", "nightly", "extra"}
    finally:
        extra.unlink()
        assert running.api_reload() == (200, [])


def test_a_rule_with_a_string_approve_cannot_be_held_in_memory() -> None:
    raw = {
        "name": "mailer",
        "on": {"source": "shop"},
        "assistant": {
            "prompt": "hi",
            "tools": ["email.send"],
            "policy": {"email.send": {"approve": "true"}},
        },
    }

    with pytest.raises(ValidationError, match="approve must be true or false"):
        Rule.model_validate(raw)


# ---------------------------------------------------------------------- end to end

APPROVED_MAIL = """\
- name: mailer
  on: {source: shop, event: orders/create}
  assistant:
    model: default
    prompt: "Order {{ payload.name }}"
    tools: [email.send]
    policy:
      email.send: {to: {domains: [example.com]}, approve: APPROVE}
"""
MAIL = {
    "to": ["sales@example.com"],
    "subject": "order",
    "text": "a new order",
    "html": None,
    "cc": None,
    "attachments": None,
}


@requires_fixtures
def test_reloaded_string_approve_is_refused_and_the_mail_still_waits_for_approval(
    tmp_path: Path,
) -> None:
    with ScriptedModel(call("email__send", MAIL)) as model, SmtpServer() as smtp:
        models = {"default": {"api": "responses", "base_url": model.url, "model": "scripted"}}
        rules = APPROVED_MAIL.replace("APPROVE", "true")
        with live_gateway(
            tmp_path, rules, admin_token=TOKEN, models=models, handlers={"email": smtp.settings()}
        ) as gw:
            (tmp_path / "rules" / "rules.yaml").write_text(
                APPROVED_MAIL.replace("APPROVE", '"true"')
            )
            reload = gw.client.post(
                "/api/rules/reload", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            gw.post_order("approve-1", name="#1")
            settled = gw.wait_for(
                lambda: [r for r in gw.runs() if r.status not in ("pending", "running")]
            )

        assert smtp.messages == [], "the mail went out without approval"
        assert reload.status_code == 422
        assert [(r.rule, r.status) for r in settled] == [("mailer", "awaiting_approval")]


# ---------------------------------------------------------------------- SIGHUP


@pytest.fixture
def served(tmp_path: Path) -> Iterator[GatewayProcess]:
    """`gateway serve` in its own process, with the valid rules and the admin API on."""
    process = GatewayProcess(write_gateway(tmp_path)).start()
    try:
        yield process
    finally:
        process.stop()


def rule_names(process: GatewayProcess) -> list[str]:
    response = httpx2.get(
        f"{process.url}/api/rules", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    return [r["name"] for r in response.json()["items"]]


def hang_up(process: GatewayProcess) -> None:
    assert process.proc is not None
    process.proc.send_signal(signal.SIGHUP)


def wait_until(condition: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_sighup_reloads_a_valid_rule_set(served: GatewayProcess, tmp_path: Path) -> None:
    (tmp_path / "rules" / "extra.yaml").write_text(
        "- name: extra\n  on: {source: ci}\n  actions:\n    - log.record: {message: x}\n"
    )

    hang_up(served)

    wait_until(lambda: rule_names(served) == ["base", "nightly", "extra"])


@pytest.mark.slow
def test_sighup_with_a_broken_rule_set_keeps_the_old_one_and_logs_every_problem(
    served: GatewayProcess, tmp_path: Path
) -> None:
    (tmp_path / "rules" / "broken.yaml").write_text(CORPUS["string-approve"][0])
    (tmp_path / "rules" / "other.yaml").write_text(CORPUS["unknown-argument"][0])

    hang_up(served)

    wait_until(lambda: "rules.reload_refused" in served.output())
    assert served.proc is not None and served.proc.poll() is None
    assert rule_names(served) == ["base", "nightly"]
    log = served.output()
    assert "approve must be true or false" in log
    assert "log.record has no argument 'colour'" in log
