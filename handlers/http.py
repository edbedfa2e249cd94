"""`http.request`: call an outside HTTP API, refusing private addresses unless they are allowlisted.

The step's idempotency key goes out as `Idempotency-Key`, so APIs that honour it dedupe our retries.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from gateway.backoff import retry_after
from gateway.tools import Family, FamilySettings, PermanentToolError, ToolContext, ToolError

if TYPE_CHECKING:
    import httpx2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_TIMEOUT = 10.0
MAX_BODY = 64 * 1024
# The response headers worth handing back to a rule or a model; the rest is noise.
KEPT_HEADERS = ("content-type", "location", "retry-after", "etag", "last-modified", "x-request-id")
RETRYABLE_STATUSES = frozenset({408, 425, 429})
# IPv6 ranges that stand for an IPv4 address (RFC 6052's well-known NAT64 prefix, and the
# deprecated IPv4-compatible form). Mapped and NAT64 addresses are translated to their IPv4
# address, so that address alone decides; the others are also judged as IPv6.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
TRANSLATED = ("IPv4-mapped", "NAT64")
# Host names whose client (and its pooled connections) is kept between calls; a call to any
# other host gets a client of its own, closed after it.
KEPT_HOSTS = 32


class HttpSettings(FamilySettings):
    """`handlers.http`: which hosts may be called, and the deadline of a whole call."""

    # Host names (globs such as `*.internal.example`) and CIDR networks: when set, only these;
    # also the only way to reach a private address.
    allow_hosts: list[str] = Field(default_factory=list)
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0)


class Clients:
    """The family's client: one `httpx2.AsyncClient` per host name, each reused for its name.

    A client pools connections by the address it connects to, and every call connects to an
    address it has just checked, so a pooled connection is always to a checked address. One
    client per name also keeps a TLS connection, verified for one name, from carrying a
    request for another name served at the same address.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._kept: dict[str, httpx2.AsyncClient] = {}

    @asynccontextmanager
    async def for_host(self, host: str) -> AsyncIterator[httpx2.AsyncClient]:
        kept = self._kept.get(host)
        if kept is not None:
            yield kept
        elif len(self._kept) < KEPT_HOSTS:
            yield self._kept.setdefault(host, self._new())
        else:
            async with self._new() as client:
                yield client

    def _new(self) -> httpx2.AsyncClient:
        import httpx2

        # trust_env=False: a proxy from the environment would bypass the address check.
        return httpx2.AsyncClient(
            timeout=self.timeout, follow_redirects=False, trust_env=False, verify=_tls()
        )

    async def aclose(self) -> None:
        kept, self._kept = list(self._kept.values()), {}
        for client in kept:
            await client.aclose()


@asynccontextmanager
async def connect(settings: HttpSettings) -> AsyncIterator[Clients]:
    """The family's clients, kept for the gateway's life and closed when it stops."""
    clients = Clients(settings.timeout)
    try:
        yield clients
    finally:
        await clients.aclose()


family = Family("http", HttpSettings, client=connect)
HttpContext = ToolContext[HttpSettings, Clients]


@family.tool("http.request")
async def request(
    context: HttpContext,
    method: Annotated[
        Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], Field(description="HTTP method")
    ],
    url: Annotated[str, Field(description="Absolute http:// or https:// URL")],
    headers: Annotated[dict[str, str] | None, Field(description="Request headers")] = None,
    # Named `json` in the schema; `json_body` here, as `json` would shadow BaseModel.json.
    json_body: Annotated[
        dict[str, Any] | list[Any] | None, Field(alias="json", description="JSON request body")
    ] = None,
    body: Annotated[str | None, Field(description="Raw request body (instead of json)")] = None,
) -> dict[str, Any]:
    """Send an HTTP request and return its status, main headers and body (JSON or text).

    Private, loopback, link-local and multicast addresses are refused unless allowlisted in
    `handlers.http.allow_hosts`; redirects are not followed (the 3xx is returned).
    """
    if json_body is not None and body is not None:
        raise PermanentToolError("give either json or body, not both")
    settings = context.settings
    target = _parse_url(url)
    allowed = AllowList.parse(settings.allow_hosts)
    # Host is ours to set (below): it must name the host whose addresses were checked.
    sent_headers = {k: v for k, v in (headers or {}).items() if k.lower() != "host"}
    if not any(name.lower() == "idempotency-key" for name in sent_headers):
        sent_headers["Idempotency-Key"] = context.key
    timeout = settings.timeout
    import httpx2  # by the first call: a gateway that makes none keeps it out of memory

    # httpx's timeouts bound each connect and each read, so a server sending a byte a second
    # would never trip them: the whole call, name lookup to last byte, has one deadline.
    try:
        async with asyncio.timeout(timeout):
            addresses = await _checked_addresses(target, allowed)
            clients = await context.client()
            async with clients.for_host(target.host) as client:
                response, raw, truncated = await _exchange(
                    client, method, target, addresses, sent_headers, json=json_body, content=body
                )
    except (TimeoutError, httpx2.TimeoutException) as error:
        raise ToolError(f"{method} {url} did not complete within {timeout:g} s") from error
    except httpx2.TransportError as error:
        raise ToolError(f"{method} {url} failed: {error!r}") from error

    status = response.status_code
    if status in RETRYABLE_STATUSES or status >= 500:
        raise ToolError(
            f"{method} {url} answered HTTP {status}",
            retry_after=retry_after(response.headers),
        )
    if status >= 400:
        snippet = raw[:500].decode("utf-8", errors="replace")
        raise PermanentToolError(f"{method} {url} answered HTTP {status}: {snippet}")
    return {
        "status": status,
        "headers": {k: response.headers[k] for k in KEPT_HEADERS if k in response.headers},
        "body": _decode(response, raw, truncated),
        "truncated": truncated,
    }


async def _exchange(
    client: httpx2.AsyncClient,
    method: str,
    target: httpx2.URL,
    addresses: list[IPAddress],
    headers: dict[str, str],
    **content: Any,
) -> tuple[httpx2.Response, bytes, bool]:
    """Send the request to the first checked address that accepts a connection: the response
    with its body read up to MAX_BODY, and whether it was cut there."""
    import httpx2

    # Connect to the addresses we checked, not to a second DNS answer (DNS rebinding), while
    # the server still sees the real host name in Host and in TLS SNI.
    headers = {**headers, "Host": target.netloc.decode("ascii")}
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    for attempt, address in enumerate(addresses, start=1):
        try:
            async with client.stream(
                method,
                target.copy_with(host=str(address)),
                headers=headers,
                extensions=extensions,
                **content,
            ) as response:
                raw, truncated = await _read_limited(response, MAX_BODY)
            return response, raw, truncated
        except httpx2.ConnectError:
            # Nothing was sent yet, so the host's next address is safe to try.
            if attempt == len(addresses):
                raise
    raise AssertionError("a host has at least one address")


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client: building one loads the CA bundle (~25 ms of CPU), which
    a client per host (and one per call beyond KEPT_HOSTS) would otherwise pay each time."""
    import httpx2

    return httpx2.create_ssl_context()


@dataclass(frozen=True)
class AllowList:
    """`allow_hosts`: host names (globs such as `*.internal.example`) and CIDR networks."""

    hosts: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: list[str]) -> AllowList:
        hosts: list[str] = []
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.append(entry.lower().rstrip("."))
        return cls(tuple(hosts), tuple(networks))

    @property
    def configured(self) -> bool:
        return bool(self.hosts or self.networks)

    def names(self, host: str) -> bool:
        return any(fnmatchcase(host, pattern) for pattern in self.hosts)

    def covers(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def _parse_url(url: str) -> httpx2.URL:
    import httpx2

    try:
        target = httpx2.URL(url)
    except httpx2.InvalidURL as error:
        raise PermanentToolError(f"invalid URL {url!r}: {error}") from error
    if target.scheme not in ("http", "https") or not target.host:
        raise PermanentToolError(
            f"only absolute http:// and https:// URLs are allowed, not {url!r}"
        )
    return target


async def _checked_addresses(target: httpx2.URL, allowed: AllowList) -> list[IPAddress]:
    """The addresses to connect to, once every address the host resolves to has passed."""
    host = target.host.lower().rstrip(".")
    named = allowed.names(host)
    addresses = await _resolve(host, target.port or (443 if target.scheme == "https" else 80))
    for address in addresses:
        if allowed.configured and not named and not allowed.covers(address):
            raise PermanentToolError(f"host {host} ({address}) is not in handlers.http.allow_hosts")
        kind = _special_kind(address)
        if kind and not named and not allowed.covers(address):
            raise PermanentToolError(
                f"refusing {host}: it resolves to {address}, a {kind}; "
                "add the host or network to handlers.http.allow_hosts to allow it"
            )
    return addresses


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        if error.errno == socket.EAI_NONAME:
            raise PermanentToolError(f"host {host} does not exist") from error
        raise ToolError(f"cannot resolve {host}: {error}") from error
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ToolError(f"cannot resolve {host}: no addresses")
    return addresses


def _special_kind(address: IPAddress) -> str | None:
    """Why an address is off limits by default, e.g. "loopback address" (None if it is a
    public unicast address)."""
    if isinstance(address, ipaddress.IPv6Address):
        for embedding, ipv4 in _embedded_ipv4(address):
            kind = _special_kind(ipv4)
            if kind is not None:
                return f"{kind} ({embedding} of {ipv4})"
            if embedding in TRANSLATED:
                return None  # the packet goes to that public IPv4 address and nowhere else
    if address.is_loopback:
        return "loopback address"
    if address.is_link_local:
        return "link-local address"
    if address.is_multicast:
        return "multicast address"
    if address.is_unspecified:
        return "unspecified address"
    if address.is_private or address.is_reserved or not address.is_global:
        return "private address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, by the scheme that carries them: a packet
    to a 6to4 address of 127.0.0.1 may end up at 127.0.0.1."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        found.append(("IPv4-mapped", address.ipv4_mapped))
    if address in NAT64:
        found.append(("NAT64", low32))
    if address.sixtofour is not None:
        found.append(("6to4", address.sixtofour))
    if address.teredo is not None:
        found.append(("Teredo", address.teredo[1]))  # the client, where the packet goes
    if address in IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are IPv6's own
        found.append(("IPv4-compatible", low32))
    return found


async def _read_limited(response: httpx2.Response, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def _decode(response: httpx2.Response, raw: bytes, truncated: bool) -> Any:
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not truncated and (content_type == "application/json" or content_type.endswith("+json")):
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw.decode(response.encoding or "utf-8", errors="replace")
