"""The door's limits, against a real `gateway serve`: request sizes, slow clients, connections.

Each limit is tried just under and just over its number. Three gateways run as subprocesses:
one with no `server:` section (the defaults), one with short timeouts, one with few connections.
"""

from __future__ import annotations

import http.client
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from pydantic import ValidationError

from gateway.config import ServerConfig
from tests.fixtures import TEST_SOURCES
from tests.process import GatewayProcess

pytestmark = pytest.mark.slow

TOKEN = "door-test-token"
KIB = 1024
MIB = 1024 * KIB
# The documented defaults (docs/deploy.md), which `gateway serve` applies with no `server:`.
DEFAULT_HEADER_LIMIT = 64 * KIB
DEFAULT_BODY_LIMIT = 64 * KIB
# The short timeouts of the `quick` gateway.
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
KEEP_ALIVE = 1
# The `crowded` gateway serves this many connections at once.
MAX_CONNECTIONS = 4


def start_gateway(folder: Path, server: dict[str, Any] | None) -> GatewayProcess:
    (folder / "rules").mkdir()
    document: dict[str, Any] = {
        "store": f"sqlite:///{folder / 'gateway.db'}",
        "admin_token": TOKEN,
        "rules": str(folder / "rules"),
        "sources": {"shop": TEST_SOURCES["shop"]},
    }
    if server is not None:
        document["server"] = server
    config = folder / "gateway.yaml"
    config.write_text(yaml.safe_dump(document))
    return GatewayProcess(config).start()


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = start_gateway(tmp_path_factory.mktemp("defaults"), None)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    timeouts = {
        "header_timeout": HEADER_TIMEOUT,
        "body_timeout": BODY_TIMEOUT,
        "keep_alive_timeout": KEEP_ALIVE,
    }
    gateway = start_gateway(tmp_path_factory.mktemp("quick"), timeouts)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = start_gateway(
        tmp_path_factory.mktemp("crowded"), {"max_connections": MAX_CONNECTIONS}
    )
    yield gateway
    gateway.stop()


def connect(gateway: GatewayProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gateway.port), timeout=10)


def response_of(sock: socket.socket) -> tuple[int, bytes]:
    """Read one HTTP response from a raw socket: its status and body."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read()


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes the connection (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def head(path: str = "/healthz", method: str = "GET", size: int = 0, **headers: str) -> bytes:
    """A request head, padded with an `X-Pad` header to exactly `size` bytes if given."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    text = "\r\n".join(lines) + "\r\n"
    if size:
        padding = size - len(text) - len("X-Pad: \r\n\r\n")
        text += f"X-Pad: {'a' * padding}\r\n"
    data = (text + "\r\n").encode()
    assert not size or len(data) == size
    return data


def vm_peak_rss(gateway: GatewayProcess) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    assert gateway.proc is not None
    status = Path(f"/proc/{gateway.proc.pid}/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) * KIB


def form(size: int) -> bytes:
    """A urlencoded login form with a wrong token, exactly `size` bytes long."""
    prefix = b"token=wrong&pad="
    return prefix + b"a" * (size - len(prefix))


# ------------------------------------------------------------------------- body size


def test_a_login_form_of_exactly_the_body_limit_is_read(defaults: GatewayProcess) -> None:
    response = httpx2.post(
        defaults.url + "/ui/login",
        content=form(DEFAULT_BODY_LIMIT),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 401  # read, and the token is wrong


def test_a_login_form_one_byte_over_the_body_limit_gets_413(defaults: GatewayProcess) -> None:
    response = httpx2.post(
        defaults.url + "/ui/login",
        content=form(DEFAULT_BODY_LIMIT + 1),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 413


def test_a_chunked_login_form_one_byte_over_the_body_limit_gets_413(
    defaults: GatewayProcess,
) -> None:
    body = form(DEFAULT_BODY_LIMIT + 1)
    response = httpx2.post(
        defaults.url + "/ui/login",
        content=iter([body[: 32 * KIB], body[32 * KIB :]]),  # no Content-Length: chunked
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 413


def test_an_admin_api_body_over_the_limit_gets_413(defaults: GatewayProcess) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    just_under = b'{"pad": "' + b"a" * (DEFAULT_BODY_LIMIT - 11) + b'"}'
    just_over = just_under + b" "

    under = httpx2.post(defaults.url + "/api/rules/test", content=just_under, headers=auth)
    over = httpx2.post(defaults.url + "/api/rules/test", content=just_over, headers=auth)

    assert (under.status_code, over.status_code) == (422, 413)
    assert over.json()["detail"] == f"request body over the {DEFAULT_BODY_LIMIT}-byte limit"


def test_a_256_mib_chunked_login_gets_413_without_growing_memory(
    defaults: GatewayProcess,
) -> None:
    chunk = b"a" * MIB
    for _ in range(3):  # the login page's first render and parse are not what is measured
        httpx2.post(defaults.url + "/ui/login", data={"token": "wrong"})
    before = vm_peak_rss(defaults)

    response = httpx2.post(
        defaults.url + "/ui/login",
        content=(chunk for _ in range(256)),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=60,
    )

    assert response.status_code == 413
    assert vm_peak_rss(defaults) - before < 8 * MIB


def test_webhooks_keep_their_own_larger_body_limit(defaults: GatewayProcess) -> None:
    body = b'{"pad": "' + b"a" * (2 * DEFAULT_BODY_LIMIT) + b'"}'

    response = httpx2.post(
        defaults.url + "/hooks/shop", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 401  # read whole and verified (unsigned), not refused as 413


# ------------------------------------------------------------------------ header size


def test_a_request_head_of_exactly_the_header_limit_is_served(defaults: GatewayProcess) -> None:
    with connect(defaults) as sock:
        sock.sendall(head(size=DEFAULT_HEADER_LIMIT))
        assert response_of(sock)[0] == 200


def test_a_request_head_one_byte_over_the_header_limit_gets_431(
    defaults: GatewayProcess,
) -> None:
    with connect(defaults) as sock:
        sock.sendall(head(size=DEFAULT_HEADER_LIMIT + 1))
        assert response_of(sock)[0] == 431
        assert closed_by_server(sock, within=2)


def test_healthz_answers_fast_while_a_128_mib_header_is_sent(defaults: GatewayProcess) -> None:
    sent = [0]

    def flood() -> None:
        with connect(defaults) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Flood: ")
            piece = b"a" * MIB
            try:
                for _ in range(128):
                    sock.sendall(piece)
                    sent[0] += len(piece)
            except OSError:  # cut off by the server: what the test wants
                pass

    flooding = threading.Thread(target=flood)
    flooding.start()
    timings = []
    with httpx2.Client(base_url=defaults.url, timeout=30) as client:
        while flooding.is_alive() or len(timings) < 3:
            started = time.monotonic()
            assert client.get("/healthz").status_code == 200
            timings.append(time.monotonic() - started)
    flooding.join()

    assert sent[0] < 128 * MIB
    assert max(timings) < 1


# --------------------------------------------------------------------- header timeout


def test_a_head_sent_in_pieces_within_the_header_timeout_is_served(quick: GatewayProcess) -> None:
    data = head()
    with connect(quick) as sock:
        for piece in (data[:10], data[10:20], data[20:]):
            sock.sendall(piece)
            time.sleep(HEADER_TIMEOUT / 5)
        assert response_of(sock)[0] == 200


def trickle(sock: socket.socket, data: bytes, every: float) -> tuple[bytes, float]:
    """Send `data` a byte at a time until the server answers; what it said, and when."""
    started = time.monotonic()
    sock.settimeout(every)
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
            answer = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            answer = b""
        return answer, time.monotonic() - started
    return b"", time.monotonic() - started


def test_a_client_sending_its_head_a_byte_at_a_time_is_answered_408_and_closed(
    quick: GatewayProcess,
) -> None:
    with connect(quick) as sock:
        answer, elapsed = trickle(sock, head(), every=0.5)

        assert answer.startswith(b"HTTP/1.1 408 ")
        assert elapsed < HEADER_TIMEOUT + 2  # the whole head would take 21 s
        assert closed_by_server(sock, within=1)


def test_300_slow_clients_at_once_are_all_closed_by_the_header_timeout(
    quick: GatewayProcess,
) -> None:
    data = head()
    clients = [connect(quick) for _ in range(300)]
    selector = selectors.DefaultSelector()
    for sock in clients:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    answers: dict[socket.socket, bytes] = {}
    started = time.monotonic()
    try:
        for position in range(len(data)):  # a byte every 0.25 s to each open connection
            for sock in clients:
                if sock not in answers:
                    try:
                        sock.send(data[position : position + 1])
                    except OSError:
                        answers[sock] = b""
            round_ends = started + 0.25 * (position + 1)
            while (left := round_ends - time.monotonic()) > 0:
                for key, _ in selector.select(timeout=left):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        answers[sock] = sock.recv(65536)
                    except OSError:
                        answers[sock] = b""
                    selector.unregister(sock)
            if len(answers) == len(clients) or time.monotonic() - started > HEADER_TIMEOUT + 5:
                break
        elapsed = time.monotonic() - started
    finally:
        selector.close()
        for sock in clients:
            sock.close()

    assert len(answers) == 300
    assert elapsed < HEADER_TIMEOUT + 3  # the whole head would take 10.5 s
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers.values())


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    quick: GatewayProcess,
) -> None:
    with connect(quick) as sock:
        assert not closed_by_server(sock, within=HEADER_TIMEOUT / 2)
        assert closed_by_server(sock, within=HEADER_TIMEOUT + 1)


# ----------------------------------------------------------------------- body timeout


def login_head(length: int) -> bytes:
    return head(
        "/ui/login",
        "POST",
        Content_Type="application/x-www-form-urlencoded",
        Content_Length=str(length),
    )


def test_a_body_sent_within_the_body_timeout_is_read(quick: GatewayProcess) -> None:
    body = form(40)
    with connect(quick) as sock:
        sock.sendall(login_head(len(body)))
        for piece in (body[:20], body[20:]):
            time.sleep(BODY_TIMEOUT / 4)
            sock.sendall(piece)
        assert response_of(sock)[0] == 401


def test_a_body_trickling_past_the_body_timeout_is_answered_408_and_closed(
    quick: GatewayProcess,
) -> None:
    with connect(quick) as sock:
        body = form(100)
        sock.sendall(login_head(len(body)))
        answer, elapsed = trickle(sock, body, every=0.25)

        assert answer.startswith(b"HTTP/1.1 408 ")
        assert elapsed < BODY_TIMEOUT + 2  # the whole body would take 25 s
        assert closed_by_server(sock, within=1)


# ------------------------------------------------------------------------- keep-alive


def test_a_connection_idle_within_the_keep_alive_timeout_serves_another_request(
    quick: GatewayProcess,
) -> None:
    with connect(quick) as sock:
        sock.sendall(head())
        assert response_of(sock)[0] == 200
        time.sleep(KEEP_ALIVE / 2)
        sock.sendall(head())
        assert response_of(sock)[0] == 200


def test_a_connection_idle_past_the_keep_alive_timeout_is_closed(quick: GatewayProcess) -> None:
    with connect(quick) as sock:
        sock.sendall(head())
        assert response_of(sock)[0] == 200
        assert closed_by_server(sock, within=KEEP_ALIVE + 2)


# ------------------------------------------------------------------------ connections


def open_served(gateway: GatewayProcess, count: int) -> list[socket.socket]:
    """`count` connections, each served one request and left open (idle, kept alive)."""
    opened = []
    for _ in range(count):
        sock = connect(gateway)
        sock.sendall(head())
        assert response_of(sock)[0] == 200
        opened.append(sock)
    return opened


@pytest.mark.parametrize(("others", "status"), [(MAX_CONNECTIONS - 1, 200), (MAX_CONNECTIONS, 503)])
def test_requests_beyond_the_connection_limit_get_503(
    crowded: GatewayProcess, others: int, status: int
) -> None:
    opened = open_served(crowded, others)
    try:
        with connect(crowded) as sock:
            sock.sendall(head())
            assert response_of(sock)[0] == status
    finally:
        for sock in opened:
            sock.close()
        time.sleep(0.2)  # the server sees the closes before the next test counts connections


# ---------------------------------------------------------------------- configuration


def test_keep_alive_may_last_as_long_as_the_header_timeout_but_not_longer() -> None:
    ServerConfig(header_timeout=5, keep_alive_timeout=5)
    with pytest.raises(ValidationError, match="keep_alive_timeout"):
        ServerConfig(header_timeout=5, keep_alive_timeout=6)


def test_deploy_doc_states_every_server_limit_with_its_default() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "deploy.md").read_text()
    cells = [line.split("|")[1:3] for line in doc.splitlines() if line.startswith("| `server.")]
    documented = {
        name.strip().strip("`"): float(default.split()[0].replace(",", ""))
        for name, default in cells
    }

    defaults = {f"server.{name}": value for name, value in ServerConfig().model_dump().items()}
    assert documented == defaults
