"""Built-in tools, one module (or package) per outside system, each making its tool `family`.

pyproject.toml lists each family under the `gateway.tools` entry points, as a plugin package
lists its own (docs/handlers.md shows a whole one).
"""
