"""Built-in tools, one module per outside system; importing this package registers them all.

To add a tool, add a module here with an async function decorated by `gateway.tools.tool`
(docs/handlers.md shows a whole one).
"""

from importlib import import_module
from pathlib import Path

for _module in sorted(p.stem for p in Path(__file__).parent.glob("*.py") if p.stem != "__init__"):
    import_module(f"{__name__}.{_module}")
