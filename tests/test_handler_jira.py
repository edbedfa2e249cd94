"""The jira.* tools, through the real `jira` client, against FakeJira on a loopback server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jira as jira_client
import pytest

from gateway.testing.fake_jira import FakeJira
from gateway.testing.server import serve_in_thread
from gateway.tools import PermanentToolError, Toolbox, ToolError
from tests.calls import call_tool, recover_tool

CREDENTIALS = ("gateway@example.com", "api-token")


@pytest.fixture
def fake() -> FakeJira:
    return FakeJira(credentials=CREDENTIALS)


@pytest.fixture
def settings(fake: FakeJira) -> Iterator[dict[str, Any]]:
    with serve_in_thread(fake) as url:
        yield {"server": url, "email": CREDENTIALS[0], "token": CREDENTIALS[1], "timeout": 5}


async def call(name: str, settings: dict[str, Any], key: str = "k1", **arguments: Any) -> Any:
    return await call_tool(name, settings, arguments, key=key)


async def recover(name: str, settings: dict[str, Any], key: str, **arguments: Any) -> Any:
    return await recover_tool(name, settings, arguments, key=key)


async def test_create_issue_returns_key_and_url_and_labels_it_with_the_step_key(
    fake: FakeJira, settings: dict[str, Any]
) -> None:
    result = await call(
        "jira.create_issue",
        settings,
        project="OPS",
        summary="Deploy failed",
        description="See CI",
        labels=["deploy"],
    )

    assert result == {"key": "OPS-1", "id": "10001", "url": f"{settings['server']}/browse/OPS-1"}
    issue = fake.issues["OPS-1"]
    assert (issue.summary, issue.description, issue.issue_type) == (
        "Deploy failed",
        "See CI",
        "Task",
    )
    assert issue.labels[0] == "deploy"
    assert issue.labels[1].startswith("gw-")


async def test_search_by_label_finds_only_the_labelled_issues(
    fake: FakeJira, settings: dict[str, Any]
) -> None:
    await call("jira.create_issue", settings, "a", project="OPS", summary="one", labels=["deploy"])
    await call("jira.create_issue", settings, "b", project="OPS", summary="two", labels=["other"])

    found = await call(
        "jira.search", settings, jql='project = OPS AND labels = "deploy" ORDER BY created DESC'
    )

    assert found["count"] == 1
    assert found["more"] is False
    assert found["issues"][0]["key"] == "OPS-1"
    assert found["issues"][0]["summary"] == "one"
    assert found["issues"][0]["status"] == "To Do"
    assert [r.path for r in fake.requests if "search" in r.path] == ["/rest/api/2/search"]


async def test_comment_is_added_with_the_step_marker(
    fake: FakeJira, settings: dict[str, Any]
) -> None:
    await call("jira.create_issue", settings, project="OPS", summary="s")

    result = await call("jira.comment", settings, "c1", issue="OPS-1", body="Rolled back.")

    assert result["issue"] == "OPS-1"
    (comment,) = fake.issues["OPS-1"].comments
    assert result["id"] == comment.id
    assert comment.body.startswith("Rolled back.")
    assert "[gw:" in comment.body


async def test_transition_by_name_moves_the_issue(fake: FakeJira, settings: dict[str, Any]) -> None:
    await call("jira.create_issue", settings, project="OPS", summary="s")

    result = await call("jira.transition", settings, "t1", issue="OPS-1", transition="done")

    assert result == {"issue": "OPS-1", "transition": "Done", "status": "Done"}
    assert fake.issues["OPS-1"].status == "Done"


async def test_unknown_transition_is_permanent_and_names_the_available_ones(
    fake: FakeJira, settings: dict[str, Any]
) -> None:
    await call("jira.create_issue", settings, project="OPS", summary="s")

    with pytest.raises(PermanentToolError, match="Start Progress"):
        await call("jira.transition", settings, "t1", issue="OPS-1", transition="Teleport")


async def test_transition_recover_sees_an_issue_already_in_the_target_status(
    fake: FakeJira, settings: dict[str, Any]
) -> None:
    await call("jira.create_issue", settings, project="OPS", summary="s")
    assert (
        await recover("jira.transition", settings, "t1", issue="OPS-1", transition="Done") is None
    )

    fake.issues["OPS-1"].status = "Done"

    found = await recover("jira.transition", settings, "t1", issue="OPS-1", transition="Done")
    assert found == {"issue": "OPS-1", "transition": "Done", "status": "Done"}


async def test_cloud_search_uses_the_search_jql_endpoint() -> None:
    fake = FakeJira(cloud=True)
    with serve_in_thread(fake) as url:
        settings = {"server": url, "deployment": "cloud", "email": "e", "token": "t"}
        await call("jira.create_issue", settings, project="OPS", summary="s", labels=["x"])

        found = await call("jira.search", settings, jql='labels in ("x", "y")')

    assert [i["key"] for i in found["issues"]] == ["OPS-1"]
    assert [r.path for r in fake.requests if "search" in r.path] == ["/rest/api/2/search/jql"]


async def test_server_error_is_retryable_and_the_retry_succeeds(
    fake: FakeJira, settings: dict[str, Any]
) -> None:
    fake.fail_next(1, status=503, retry_after=7, path="/issue")

    with pytest.raises(ToolError) as failure:
        await call("jira.create_issue", settings, project="OPS", summary="s")
    assert failure.value.retryable
    assert failure.value.retry_after == 7
    assert fake.issues == {}

    result = await call("jira.create_issue", settings, project="OPS", summary="s")
    assert result["key"] == "OPS-1"


async def test_lost_response_after_create_is_recovered_without_a_second_issue(
    fake: FakeJira, settings: dict[str, Any]
) -> None:
    fake.drop_response_after_commit_next()

    with pytest.raises(ToolError) as failure:
        await call("jira.create_issue", settings, "step-9", project="OPS", summary="s")
    assert failure.value.retryable
    assert list(fake.issues) == ["OPS-1"]

    found = await recover("jira.create_issue", settings, "step-9", project="OPS", summary="s")

    assert found == {"key": "OPS-1", "id": "10001", "url": f"{settings['server']}/browse/OPS-1"}
    assert list(fake.issues) == ["OPS-1"]


async def test_create_recover_finds_nothing_for_another_step_key(
    fake: FakeJira, settings: dict[str, Any]
) -> None:
    await call("jira.create_issue", settings, "step-1", project="OPS", summary="s")

    assert (
        await recover("jira.create_issue", settings, "step-2", project="OPS", summary="s") is None
    )


async def test_lost_response_after_comment_is_recovered_by_its_marker(
    fake: FakeJira, settings: dict[str, Any]
) -> None:
    await call("jira.create_issue", settings, project="OPS", summary="s")
    fake.drop_response_after_commit_next()

    with pytest.raises(ToolError):
        await call("jira.comment", settings, "c7", issue="OPS-1", body="hello")

    found = await recover("jira.comment", settings, "c7", issue="OPS-1", body="hello")
    assert found is not None
    assert found["id"] == fake.issues["OPS-1"].comments[0].id
    assert await recover("jira.comment", settings, "c8", issue="OPS-1", body="hello") is None


async def test_bad_request_is_permanent_with_jiras_message(
    fake: FakeJira, settings: dict[str, Any]
) -> None:
    with pytest.raises(PermanentToolError, match="valid project is required") as failure:
        await call("jira.create_issue", settings, project="NOPE", summary="s")
    assert not failure.value.retryable


async def test_wrong_credentials_are_permanent(fake: FakeJira, settings: dict[str, Any]) -> None:
    with pytest.raises(PermanentToolError, match="HTTP 401"):
        await call("jira.search", {**settings, "token": "wrong"}, jql="project = OPS")


async def test_unreachable_jira_is_retryable() -> None:
    with serve_in_thread(FakeJira()) as url:
        pass  # the port is free again once the server has stopped

    with pytest.raises(ToolError) as failure:
        await call("jira.search", {"server": url, "timeout": 2}, jql="project = OPS")
    assert failure.value.retryable


async def test_one_jira_client_serves_every_call_and_closes_with_the_gateway(
    settings: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Any] = []
    closed: list[Any] = []
    # The handler imports the client class at its first call (lazily): count it where it lives.
    real = jira_client.JIRA

    def counted(*args: Any, **kwargs: Any) -> Any:
        client = real(*args, **kwargs)
        close = client.close

        def recorded_close() -> None:
            closed.append(client)
            close()

        client.close = recorded_close
        made.append(client)
        return client

    monkeypatch.setattr(jira_client, "JIRA", counted)
    async with Toolbox({"jira": settings}) as toolbox:
        await toolbox.call("jira.create_issue", {"project": "OPS", "summary": "s"}, key="a")
        await toolbox.call("jira.comment", {"issue": "OPS-1", "body": "b"}, key="b")
        await toolbox.call("jira.search", {"jql": "project = OPS"}, key="c")
        assert len(made) == 1
        assert closed == []

    assert closed == made
