"""SQLAlchemy's asyncio engine without its ORM: the store runs Core statements on
`AsyncEngine`s and never opens an `AsyncSession`.

`sqlalchemy.ext.asyncio`'s package module imports its session module, and with it the whole
ORM: 6.4 MB resident in every gateway process (docs/benchmarks.md, memory). Loaded from here,
the package holds the engine and result modules at first; the first name asked of it that
they lack (`AsyncSession`, for a library or a test that wants one) runs the package's own
`__init__`, which completes it as if it had been imported the usual way. Importing this
module loads it (`gateway.store` does, before anything else).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

PACKAGE = "sqlalchemy.ext.asyncio"
# What the package's __init__ takes from its engine and result modules (SQLAlchemy 2.x).
EXPORTS = {
    "engine": (
        "AsyncConnection",
        "AsyncEngine",
        "AsyncTransaction",
        "async_engine_from_config",
        "create_async_engine",
        "create_async_pool_from_url",
    ),
    "result": ("AsyncMappingResult", "AsyncResult", "AsyncScalarResult", "AsyncTupleResult"),
}


def load() -> None:
    """Import `sqlalchemy.ext.asyncio` lean, unless it is imported already."""
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None:  # pragma: no cover - a broken install
        return
    package = importlib.util.module_from_spec(spec)

    def complete(name: str) -> Any:
        # Dunder lookups (copy, pickle) mean nothing here; a submodule's name is the import
        # system asking before it imports that submodule (`from . import exc`).
        if name.startswith("__") or importlib.util.find_spec(f"{PACKAGE}.{name}") is not None:
            raise AttributeError(name)
        del package.__getattr__
        assert spec.loader is not None
        spec.loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = complete  # type: ignore[method-assign]
    sys.modules[PACKAGE] = package
    try:
        for module, names in EXPORTS.items():
            loaded = importlib.import_module(f"{PACKAGE}.{module}")
            for name in names:
                setattr(package, name, getattr(loaded, name))
    except BaseException:
        del sys.modules[PACKAGE]
        raise


load()
