"""Tools: typed async functions that rules and assistants call, grouped in families.

`tool.py` is one tool (schema, validation, context), `family.py` a family and the registries the
`gateway.tools` entry points fill, `toolbox.py` the families as one gateway runs them.
"""

from gateway.tools.family import FAMILIES, TOOLS, Family, FamilySettings, NoSettings, tool
from gateway.tools.tool import (
    HTML,
    Html,
    PermanentToolError,
    Tool,
    ToolContext,
    ToolError,
    describe_error,
)
from gateway.tools.toolbox import Toolbox

__all__ = [
    "FAMILIES",
    "HTML",
    "TOOLS",
    "Family",
    "FamilySettings",
    "Html",
    "NoSettings",
    "PermanentToolError",
    "Tool",
    "ToolContext",
    "ToolError",
    "Toolbox",
    "describe_error",
    "tool",
]
