"""Tool schemas as OpenAI function calling wants them: strict, every object closed.

Built from the pydantic model of a tool's arguments; `closed` says whether strict mode can hold.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def strict_schema(arguments: type[BaseModel]) -> dict[str, Any]:
    """The strict JSON schema of the arguments: every property required, no extras.

    Optional parameters become `type | null`; a null means "use the default".
    """
    schema = arguments.model_json_schema()
    return _strict(schema, schema.get("$defs", {}))


def _strict(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return _strict(dict(defs[schema["$ref"].split("/")[-1]]), defs)
    out = {k: v for k, v in schema.items() if k not in ("$defs", "title", "default")}
    if out.get("type") == "object" and "properties" in out:
        required = set(out.get("required", []))
        properties = {}
        for key, value in out["properties"].items():
            prop = _strict(value, defs)
            if key not in required:
                prop = _nullable(prop)
            properties[key] = prop
        out["properties"] = properties
        out["required"] = list(properties)
        out["additionalProperties"] = False
    if "items" in out:
        out["items"] = _strict(out["items"], defs)
    if "anyOf" in out:
        out["anyOf"] = [_strict(v, defs) for v in out["anyOf"]]
    if "additionalProperties" in out and isinstance(out["additionalProperties"], dict):
        out["additionalProperties"] = _strict(out["additionalProperties"], defs)
    return out


def closed(schema: Any) -> bool:
    """Whether every object in a schema lists its properties and forbids others."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and (
            "properties" not in schema or schema.get("additionalProperties") is not False
        ):
            return False
        if "items" in schema and schema["items"] in ({}, True):
            return False
        return all(closed(v) for v in schema.values() if isinstance(v, (dict, list)))
    if isinstance(schema, list):
        return all(closed(v) for v in schema)
    return True


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    if "anyOf" in prop:
        if not any(v.get("type") == "null" for v in prop["anyOf"]):
            prop["anyOf"] = [*prop["anyOf"], {"type": "null"}]
        return prop
    description = prop.pop("description", None)
    result: dict[str, Any] = {"anyOf": [prop, {"type": "null"}]}
    if description:
        result["description"] = description
    return result
