"""`gateway knowledge index|search|list|drop`: the collections from the command line.

`index` brings a new database's schema up to date, as it writes; the others open the store as
it is (`gateway db upgrade` first).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.table import Table

from gateway.cli.common import ConfigOption, console, load_config, print_json, with_store
from gateway.knowledge.library import MAX_K, Library, Ranking

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.store import Store

knowledge_app = typer.Typer(
    help="Knowledge collections: index, search, list, drop.", no_args_is_help=True
)
T = TypeVar("T")


def _with_library(
    config: Path | None,
    use: Callable[[Library, Store, Config], Awaitable[T]],
    *,
    migrate: bool = False,
) -> T:
    cfg = load_config(config)

    async def go(store: Store) -> T:
        library = Library(cfg.knowledge, store.knowledge, models=cfg.models, base_dir=cfg.base_dir)
        try:
            return await use(library, store, cfg)
        finally:
            await library.aclose()

    return with_store(cfg, go, migrate=migrate)


@knowledge_app.command()
def index(
    name: Annotated[str | None, typer.Argument(help="One collection (default: all)")] = None,
    config: ConfigOption = None,
) -> None:
    """Index collections: add, update and remove passages by content hash."""

    async def go(library: Library, store: Store, cfg: Config) -> None:
        names = [name] if name else list(cfg.knowledge)
        if any(c.embeddings for n, c in cfg.knowledge.items() if n in names):
            console.print(
                f"note: {await store.knowledge.vector_note()}", highlight=False, soft_wrap=True
            )
        for one in names:
            report = await library.index(one)
            console.print(
                f"{one}: {len(report.added)} added, {len(report.updated)} updated, "
                f"{len(report.removed)} removed, {report.unchanged} unchanged; "
                f"{report.passages} passages written in {report.seconds:.2f} s"
                + (
                    f"; {report.tokens} embedding tokens (${report.cost:.4f})"
                    if report.tokens
                    else ""
                ),
                highlight=False,
                soft_wrap=True,
            )
            for skipped in report.skipped:
                console.print(
                    f"  [yellow]skipped[/yellow] {skipped}", highlight=False, soft_wrap=True
                )
        if name is None and any(c.hosted for c in cfg.knowledge.values()):
            for gone in await library.prune_hosted():
                console.print(f"{gone}: no longer configured, vector store deleted", soft_wrap=True)

    _with_library(config, go, migrate=True)


@knowledge_app.command()
def search(
    name: Annotated[str, typer.Argument(help="The collection")],
    query: Annotated[str, typer.Argument(help="What to look for")],
    k: Annotated[int, typer.Option("-k", min=1, max=MAX_K, help="Passages at most")] = 5,
    ranking: Annotated[
        Ranking | None, typer.Option(help="Default: fused with embeddings, else lexical")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the passages as JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """Search a collection, best passages first, each with its citation."""

    async def go(library: Library, store: Store, cfg: Config) -> None:
        hits = await library.search(name, query, k, ranking)
        if as_json:
            print_json([hit.as_dict(10_000) for hit in hits])
            return
        for hit in hits:
            console.print(
                f"[bold]{hit.citation}[/bold]  {hit.score:.4f}", highlight=False, soft_wrap=True
            )
            console.print(hit.passage.text, markup=False, highlight=False, soft_wrap=True)
            console.print()
        if not hits:
            console.print("no passage matched")

    _with_library(config, go)


@knowledge_app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(help="Show this collection's files")] = None,
    config: ConfigOption = None,
) -> None:
    """The indexed collections (files, passages, last index), or one collection's files."""

    async def go(library: Library, store: Store, cfg: Config) -> None:
        if name is not None:
            table = Table("file", "passages", "sha256", "indexed at")
            for f in await store.knowledge.files(name):
                table.add_row(f.path, str(f.passages), f.sha256[:12], f.indexed_at.isoformat())
            console.print(table)
            return
        stats = {s.name: s for s in await store.knowledge.collections()}
        table = Table("collection", "files", "passages", "embedded", "last indexed", "config")
        for one in sorted(set(stats) | set(cfg.knowledge)):
            s = stats.get(one)
            configured = cfg.knowledge.get(one)
            mode = (
                "not configured"
                if configured is None
                else "hosted"
                if configured.hosted
                else f"embeddings: {configured.embeddings}"
                if configured.embeddings
                else "lexical"
            )
            table.add_row(
                one,
                str(s.files if s else 0),
                str(s.passages if s else 0),
                str(s.embedded if s else 0),
                s.last_indexed.isoformat() if s and s.last_indexed else "never",
                mode,
            )
        console.print(table)

    _with_library(config, go)


@knowledge_app.command()
def drop(
    name: Annotated[str, typer.Argument(help="The collection")],
    config: ConfigOption = None,
) -> None:
    """Remove a collection's files and passages from the store (the files stay on disk)."""

    async def go(library: Library, store: Store, cfg: Config) -> None:
        configured = cfg.knowledge.get(name)
        if configured is not None and configured.hosted:
            deleted = await library.drop_hosted(name)
            console.print(
                f"{name}: vector store {'deleted' if deleted else 'not found'}", soft_wrap=True
            )
            return
        removed = await store.knowledge.drop(name)
        console.print(
            f"{name}: {removed} file(s) removed from the store", highlight=False, soft_wrap=True
        )

    _with_library(config, go)
