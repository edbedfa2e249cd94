"""The admin API's OpenAPI 3.1 document, generated from the route table and its models.

Paths, parameters, bodies, responses and schemas all come from `gateway.api.routes` and the
pydantic models it names; only the prose below is written here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import core_schema

from gateway import __version__
from gateway.api.models import Error
from gateway.api.params import MAX_ID
from gateway.api.routes import ENDPOINTS, Endpoint

Schema = dict[str, Any]
Refs = dict[tuple[Any, JsonSchemaMode], Schema]  # (model, mode) -> its $ref

ERRORS = {
    401: "No or wrong bearer token",
    404: "No record with this id",
    409: "The record's state does not allow this change",
    422: "Invalid parameters or body",
}


class _Schemas(GenerateJsonSchema):
    """Pydantic's JSON Schema, with two changes for this document."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # a property's title only repeats its name

    def tagged_union_schema(self, schema: core_schema.TaggedUnionSchema) -> Schema:
        # The rule tester tells its body's variants apart by the keys present, and a body can
        # fit more than one: any of them, not exactly one.
        generated = super().tagged_union_schema(schema)
        if "oneOf" in generated:
            generated["anyOf"] = generated.pop("oneOf")
        return generated


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _parameters(endpoint: Endpoint) -> list[Schema]:
    parameters: list[Schema] = []
    if endpoint.record is not None:
        parameters.append(
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": f"the {endpoint.record}'s id",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
            }
        )
    if endpoint.query is not None:
        query = endpoint.query.model_json_schema(schema_generator=_Schemas)
        for name, schema in query["properties"].items():
            description = schema.pop("description", "")
            if schema.get("default", 0) is None:
                del schema["default"]  # absent, not null: a query string has no null
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in query.get("required", ()),
                    "schema": schema,
                    "description": description,
                }
            )
    return parameters


def _operation(endpoint: Endpoint, refs: Refs) -> Schema:
    if endpoint.returns is None:
        ok = _json({"type": "object"}, "The OpenAPI document")
    else:
        ok = _json(refs[endpoint.returns, "serialization"], "OK")
    errors = {str(code): {"$ref": f"#/components/responses/E{code}"} for code in ERRORS}
    operation: Schema = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "responses": {"200": ok, **{c: errors[c] for c in map(str, (401, *endpoint.errors))}},
    }
    if parameters := _parameters(endpoint):
        operation["parameters"] = parameters
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": endpoint.body_required,
            "content": {"application/json": {"schema": refs[endpoint.body, "validation"]}},
        }
    return operation


def document() -> Schema:
    """The OpenAPI 3.1 document of `/api` (paths relative to the `/api` server)."""
    shapes: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Error, "serialization")]
    for endpoint in ENDPOINTS:
        if endpoint.returns is not None:
            shapes.append((endpoint.returns, "serialization"))
        if endpoint.body is not None:
            shapes.append((endpoint.body, "validation"))
    refs, definitions = models_json_schema(
        list(dict.fromkeys(shapes)),
        ref_template="#/components/schemas/{model}",
        schema_generator=_Schemas,
    )
    paths: dict[str, Schema] = {}
    for endpoint in ENDPOINTS:
        path = endpoint.path.replace("{id:int}", "{id}")
        paths.setdefault(path, {})[endpoint.method.lower()] = _operation(endpoint, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Webhook gateway admin API",
            "version": __version__,
            "description": "Inspect events and runs, replay, retry, approve, reject; rules.",
        },
        "servers": [{"url": "/api"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": definitions.get("$defs", {}),
            "responses": {
                f"E{code}": _json(refs[Error, "serialization"], text)
                for code, text in ERRORS.items()
            },
        },
    }
