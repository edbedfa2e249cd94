"""`gateway send`: sign a payload as a source's provider would, and post it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import ConfigOption, app, console, err, load_config


@app.command()
def send(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="The payload to post, byte for byte", exists=True)
    ],
    source: Annotated[str, typer.Option(help="The configured source to sign for")],
    config: ConfigOption = None,
    headers: Annotated[
        Path | None,
        typer.Option(help="JSON object of headers to send (default: FILE's .headers.json)"),
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="Extra header, 'Name: value'")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Where to post (default: this config's server)")
    ] = None,
    new_id: Annotated[
        bool,
        typer.Option("--new-id", help="Send as a new event: a fresh delivery id (or body id)"),
    ] = False,
) -> None:
    """Sign a payload as the source's provider would (fresh timestamp) and post it."""
    import httpx2

    from gateway.errors import ConfigError
    from gateway.ingest.provider import PROVIDERS
    from gateway.insecure import shown_url

    cfg = load_config(config)
    if source not in cfg.sources:
        err.print(f"[red]error:[/red] no source named {source!r} in the config")
        raise typer.Exit(1)
    body = file.read_bytes()
    if headers is None:
        sibling = file.with_name(file.name.removesuffix(".json") + ".headers.json")
        headers = sibling if sibling.exists() else None
    sent = merge_headers(json.loads(headers.read_text()) if headers else {}, _parse(header or []))
    provider = PROVIDERS[cfg.sources[source].provider](cfg.sources[source])
    if new_id:
        from gateway.ingest.fresh import NoNewDelivery, new_delivery

        def signed(data: bytes, given: dict[str, str]) -> dict[str, str]:
            return merge_headers(given, provider.sign(data, given, time.time()))

        try:
            body, sent = new_delivery(provider, body, sent, signed)
        except NoNewDelivery as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
    try:
        sent = merge_headers(sent, provider.sign(body, sent, time.time()))
    except ConfigError as exc:  # e.g. a source that holds only public keys cannot sign
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    sent.setdefault("Content-Type", "application/json")
    target = url or f"http://{cfg.host}:{cfg.port}/hooks/{source}"
    try:
        response = httpx2.post(target, content=body, headers=sent, timeout=30)
    except httpx2.HTTPError as exc:
        err.print(f"[red]error:[/red] could not post to {shown_url(target)}: {exc}")
        raise typer.Exit(1) from None
    console.print(f"{response.status_code} {response.text}", highlight=False, markup=False)
    if response.status_code >= 400:
        raise typer.Exit(1)


def merge_headers(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """Header names are case-insensitive: a new value replaces any spelling of the old name."""
    lowered = {name.lower() for name in extra}
    merged = {k: v for k, v in base.items() if k.lower() not in lowered}
    merged.update(extra)
    return merged


def _parse(pairs: list[str]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not sep:
            raise typer.BadParameter(f"header {pair!r} is not 'Name: value'")
        parsed[name.strip()] = value.strip()
    return parsed
