"""The shape of the code, checked: which modules may import which.

Read from the source files' import statements (nothing is imported to check them).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "handlers")
# The store's surface: the Store and its interfaces, the records and statuses it hands out,
# opening and migrating a database, wake-ups and the worker lock. The rest is its inside.
STORE_SURFACE = {
    "gateway.store",
    "gateway.store.abc",
    "gateway.store.records",
    "gateway.store.status",
    "gateway.store.database",
    "gateway.store.notify",
    "gateway.store.lock",
}
# The sql.query tool connects to the operator's own databases with SQLAlchemy, never to the
# store: its SQL is the operator's.
OPERATOR_DATABASES = "handlers/sql"


def modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            yield ".".join(parts), path


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Each module `path` imports, with its line (`from a import b`: `a`, and `a.b` if b is a
    module of this repository)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                if is_module(f"{node.module}.{alias.name}"):
                    yield node.lineno, f"{node.module}.{alias.name}"


def test_no_module_outside_the_store_imports_sqlalchemy_or_the_store_inside() -> None:
    found = []
    for name, path in modules():
        if name == "gateway.store" or name.startswith("gateway.store."):
            continue
        where = path.relative_to(ROOT).as_posix()
        for line, imported in imports(path):
            sql = imported.split(".")[0] == "sqlalchemy"
            if sql and where.startswith(OPERATOR_DATABASES):
                continue
            inside = imported.startswith("gateway.store.") and imported not in STORE_SURFACE
            if sql or inside:
                found.append(f"{where}:{line} imports {imported}")
    assert found == [], "SQL belongs in gateway/store; the rest uses Store and store.abc:\n" + (
        "\n".join(found)
    )
