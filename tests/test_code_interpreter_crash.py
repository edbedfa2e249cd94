"""`kill -9` between the code interpreter's downloads and the mail that attaches them: the
restarted gateway takes the files from its journal, downloads nothing again, mails once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gateway.testing.fake_llm import ScriptedModel, answer, call, code, turn
from gateway.testing.smtp import SmtpServer
from tests.fixtures import load, requires_fixtures
from tests.process import GatewayProcess, wait_until

pytestmark = [requires_fixtures, pytest.mark.slow]

RULE = """
- name: order-chart
  on: {source: shop, event: orders/create}
  assistant:
    instructions: Chart the order with the code interpreter and mail the chart to sales.
    prompt: "Order {{ payload.name }}"
    tools: [code_interpreter, email.send]
"""
CHART = b"\x89PNG\r\n\x1a\n" + b"chart" * 100
SUMMARY = b"order,total\r\n#1001,9.99\r\n"
MAIL = {
    "to": ["sales@example.com"],
    "subject": "Order chart",
    "text": "Attached.",
    "html": None,
    "cc": None,
    "attachments": ["chart.png", "summary.csv"],
}


def test_run_killed_between_download_and_mail_resumes_without_a_second_download_or_mail(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    with (
        SmtpServer() as smtp,
        ScriptedModel(
            code(
                "plot(order)",
                files={"chart.png": CHART, "summary.csv": SUMMARY},
                then=turn(call("email__send", MAIL)),
            ),
            answer("Mailed the chart."),
        ) as model,
    ):
        smtp.stop()  # the mail fails until the gateway has been killed
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / "chart.yaml").write_text(RULE)
        config = write_config(
            models={"default": {"api": "responses", "base_url": model.url, "model": "m"}},
            handlers={"email": smtp.settings()},
            worker={"backoff_base": 2.0, "backoff_max": 2.0},
        )
        gateway = GatewayProcess(config).start()
        order = load("shopify", "orders_create")
        try:
            httpx2.post(
                f"{gateway.url}/hooks/shop", content=order.body, headers=order.headers
            ).raise_for_status()
            # Downloaded and journaled; the mail failed and waits for its retry.
            wait_until(lambda: "email.send" in str(_run(config).get("error")))
            assert len(model.containers.content_requests) == 2
            gateway.kill()

            smtp.start()
            gateway = GatewayProcess(config).start()
            wait_until(lambda: _run(config).get("status") == "succeeded", timeout=30)
        finally:
            gateway.stop()

    assert len(model.containers.content_requests) == 2, "a file was downloaded twice"
    assert len(model.containers.containers) == 1  # the resumed run used its own container
    assert len(model.requests) == 2  # the code's turn was not asked (nor its code run) again
    [mail] = smtp.messages
    attachments = {str(p.get_filename()): p for p in mail.iter_attachments()}
    assert attachments["chart.png"].get_content() == CHART
    assert attachments["summary.csv"].get_content().encode() == SUMMARY


def _run(config: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "runs", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    runs = json.loads(out)
    return dict(runs[0]) if runs else {}
