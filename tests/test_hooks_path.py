"""`POST /hooks/{source}` goes straight to the ingest endpoint; everything else takes the router.

The shortcut and the route must take the same requests (one decision): a test compares them
over paths and methods, and the live gateway answers the route's 404 and 405 around it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.routing import Match, Route
from starlette.types import Scope

from gateway.app import direct_source
from tests.live import live_gateway


def _scope(method: str, path: str, root_path: str = "") -> Scope:
    return {"type": "http", "method": method, "path": path, "root_path": root_path}


async def _endpoint(scope: Scope, receive: object, send: object) -> None:  # never called
    raise AssertionError


@pytest.mark.parametrize("method", ["POST", "GET", "PUT"])
@pytest.mark.parametrize(
    "path",
    [
        "/hooks/shop",
        "/hooks/",
        "/hooks",
        "/hooks/shop/",
        "/hooks/a/b",
        "/hooksx/shop",
        "/hooks/%2F",
    ],
)
def test_the_shortcut_takes_exactly_what_the_hooks_route_takes(method: str, path: str) -> None:
    route = Route("/hooks/{source}", _endpoint, methods=["POST"])
    scope = _scope(method, path)
    match, child = route.matches(scope)
    expected = child["path_params"]["source"] if match is Match.FULL else None
    assert direct_source(scope) == expected


def test_a_mounted_root_path_takes_the_router() -> None:
    assert direct_source(_scope("POST", "/gw/hooks/shop", root_path="/gw")) is None


def test_a_websocket_or_lifespan_scope_takes_the_router() -> None:
    assert direct_source({"type": "websocket", "path": "/hooks/shop"}) is None
    assert direct_source({"type": "lifespan"}) is None


def test_around_the_shortcut_the_router_still_answers_404_and_405(tmp_path: Path) -> None:
    with live_gateway(tmp_path, "[]") as gateway:
        stored = gateway.post_order("path-1", test_event="path-1")
        assert stored.status_code == 202
        assert gateway.client.get("/hooks/shop").status_code == 405
        assert gateway.client.post("/hooks/shop/extra", content=b"{}").status_code == 404
        assert gateway.client.post("/hooks/nobody", content=b"{}").status_code == 404


def test_a_draining_gateway_refuses_webhooks_on_the_shortcut(tmp_path: Path) -> None:
    with live_gateway(tmp_path, "[]") as gateway:
        gateway.app.state.gateway.shutdown.begin()
        refused = gateway.client.post("/hooks/shop", content=b"{}")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
