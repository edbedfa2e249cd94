"""The CLI opens the store one way: read-only commands never change the database's schema."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import yaml
from typer.testing import CliRunner

from gateway import cli
from gateway.store import database

runner = CliRunner()


def write_config(tmp_path: Path) -> tuple[Path, Path]:
    rules = tmp_path / "rules"
    rules.mkdir()
    db = tmp_path / "gateway.db"
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"store": f"sqlite:///{db}", "rules": str(rules)}))
    return config, db


def migrate_to(db: Path, revision: str) -> None:
    async def go() -> None:
        engine, _ = database.connect(f"sqlite:///{db}")
        try:
            await database.upgrade(engine, revision)
        finally:
            await engine.dispose()

    asyncio.run(go())


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def revision(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        (found,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(found)


def test_events_on_an_older_database_leaves_it_as_it_was_and_says_to_upgrade(
    tmp_path: Path,
) -> None:
    config, db = write_config(tmp_path)
    migrate_to(db, "0005")

    result = runner.invoke(cli.app, ["events", "--config", str(config)])

    assert result.exit_code == 1
    assert "gateway db upgrade" in result.output
    assert revision(db) == "0005"


def test_events_on_an_unmigrated_database_creates_no_table(tmp_path: Path) -> None:
    config, db = write_config(tmp_path)
    sqlite3.connect(db).close()  # an empty database file

    result = runner.invoke(cli.app, ["events", "--config", str(config)])

    assert result.exit_code == 1
    assert "gateway db upgrade" in result.output
    assert tables(db) == set()


def test_events_on_a_current_database_lists_nothing_yet(tmp_path: Path) -> None:
    config, db = write_config(tmp_path)
    migrate_to(db, "head")

    result = runner.invoke(cli.app, ["events", "--json", "--config", str(config)])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "[]"
