"""Files a run makes (a CSV to attach) survive a retry in another process: they are rebuilt."""

from __future__ import annotations

from pathlib import Path

from gateway.testing.smtp import SmtpServer
from tests.fixtures import requires_fixtures
from tests.live import live_gateway

pytestmark = requires_fixtures

RULE = """
- name: export
  on: {source: shop, event: orders/create}
  actions:
    - report.csv: {name: order.csv, columns: [name, total], rows: [["{{ payload.name }}", "9.99"]]}
    - email.send:
        to: [sales@example.com]
        subject: "Order {{ payload.name }}"
        text: see attached
        attachments: [order.csv]
"""


def test_a_retried_run_rebuilds_its_files_from_the_journal(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        smtp.stop()  # the mail server is down for the first attempt
        with live_gateway(
            tmp_path, RULE, worker={"backoff_base": 1.0, "backoff_max": 1.0},
            handlers={"email": smtp.settings()},
        ) as gw:  # fmt: skip
            gw.post_order("e1", name="#42")
            gw.wait_for(lambda: [r for r in gw.runs() if r.status == "pending" and r.error])
            # As if the retry ran in a new process: the in-memory files are gone.
            gw.app.state.gateway.worker.files.clear()
            smtp.start()
            [run] = gw.finished_runs(1)

    assert run.status == "succeeded"
    [mail] = smtp.messages
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_filename() == "order.csv"
    assert "#42" in attachment.get_content()
