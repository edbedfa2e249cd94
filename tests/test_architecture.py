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


# The layers, lowest first: a module may import its own layer's and lower ones', never a higher
# one's (store ← rules ← runs/assistant ← worker ← runtime ← api/ui/cli). Keyed by the first
# name under `gateway` (`gateway.store.runs` is "store"); `handlers/*` is "handlers".
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        # Foundations: the version, the error tree, logging, metrics, YAML, entry points.
        "gateway errors backoff build nesting redaction log yamlfile problems plugins metrics"
        " metrics_sharing"
        " tracing allocator collector plain_structlog",
        "issue_keys",
        "tools",  # typed tool functions and their registry
        # settings; mcp: the MCP servers whose tools rules call
        "retention_config retrying knowledge_config reconcile_config config server mcp",
        "store",
        "rules ingest handlers insecure retention reconcile",
        "scheduler",
        "runs assistant knowledge thin",  # thin: fetching thin events' objects before routing
        "worker",
        "ruleset runtime worker_process",  # the composition root: every part, started
        "operations evaluation",  # what an operator does; eval replays on a worker of its own
        "api ui cli app testing runview startup terminal agents",  # the edges (agents: /mcp)
    )
)
# Edges that break the layers, each with the issue that removes it (none since issue 14).
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "handlers":
        return "handlers"
    if parts[0] != "gateway":
        return None
    return parts[1] if len(parts) > 1 else "gateway"


def rank(layer: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if layer in names)


def package_imports() -> dict[str, dict[str, str]]:
    """Layer → each layer it imports → one place that does (file:line)."""
    edges: dict[str, dict[str, str]] = {}
    for name, path in modules():
        source = layer_of(name)
        assert source is not None
        for line, imported in imports(path):
            target = layer_of(imported)
            if target is not None and target != source:
                where = f"{path.relative_to(ROOT).as_posix()}:{line}"
                edges.setdefault(source, {}).setdefault(target, where)
    return edges


def test_every_package_has_a_layer() -> None:
    layers = {layer_of(name) for name, _ in modules()}
    unplaced = sorted(str(layer) for layer in layers if not any(layer in ls for ls in LAYERS))
    assert unplaced == [], "place each new package in LAYERS (tests/test_architecture.py)"


def test_no_lower_layer_imports_a_higher_one() -> None:
    found = [
        f"{where}: {source} imports {target}"
        for source, targets in package_imports().items()
        for target, where in targets.items()
        if rank(target) > rank(source) and (source, target) not in KNOWN_EXCEPTIONS
    ]
    assert found == [], "a lower layer imports a higher one:\n" + "\n".join(found)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle of `edges`, each once, starting from its least name (depth-first)."""
    found = []
    for start in edges:
        path, stack = [start], [iter(sorted(edges[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                path.pop()
            elif following == start:
                found.append([*path, start])
            elif following not in path and following > start:
                path.append(following)
                stack.append(iter(sorted(edges.get(following, ()))))
    return found


def test_no_import_cycle_between_packages() -> None:
    edges = {
        source: {t for t in targets if (source, t) not in KNOWN_EXCEPTIONS}
        for source, targets in package_imports().items()
    }
    found = [" -> ".join(cycle) for cycle in cycles(edges)]
    assert found == [], "import cycles between packages:\n" + "\n".join(found)


def test_the_cycle_walk_finds_every_cycle_once() -> None:
    edges = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "a"], ["a", "b", "c", "a"]]


def test_every_exception_class_is_in_the_error_tree() -> None:
    """One module holds every exception the gateway defines (as httpx's `_exceptions.py`)."""
    tree = ROOT / "gateway" / "errors.py"
    elsewhere = []
    for name, path in modules():
        if path == tree or name.startswith("gateway.testing"):  # loopback fakes: not the gateway
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base).split(".")[-1] for base in node.bases]
                if any(base.endswith(("Error", "Exception")) for base in bases):
                    elsewhere.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno}")
    assert elsewhere == [], "define exceptions in gateway/errors.py:\n" + "\n".join(elsewhere)


MAX_MODULE_LINES = 400
# Modules allowed over the limit for now, each with the issue that splits it (none since 14).
TOO_LONG_FOR_NOW: set[str] = set()


def test_no_module_is_over_400_lines() -> None:
    """A module holds one concept (median ~150 lines, as Starlette's and httpx's)."""
    long = []
    for _, path in modules():
        where = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES and where not in TOO_LONG_FOR_NOW:
            long.append(f"{where}: {lines} lines")
    assert long == [], f"over {MAX_MODULE_LINES} lines:\n" + "\n".join(long)
