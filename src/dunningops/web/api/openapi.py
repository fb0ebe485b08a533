"""The OpenAPI 3.1 description of /api/v1, built from the endpoint table and the pydantic models
(``model_json_schema``): what is described is what is served."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from dunningops import __version__
from dunningops.web.api.http import MAX_BODY_TEXT, MAX_ITEMS, PREFIX, Endpoint
from dunningops.web.api.models import ITEM_MODELS, Error, ItemErrors

OPENAPI_PATH = "/openapi.json"
REF = "#/components/schemas/{model}"

# One example per upsert, in the order a system pushes them (each refers to the one before).
EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "customers": [
        {"external_id": "C100", "name": "Boulangerie Martin SARL", "country": "FR", "locale": "fr_FR", "currency": "EUR"},
    ],
    "contacts": [
        {
            "customer_external_id": "C100",
            "email": "paul@martin.example",
            "name": "Paul Martin",
            "job": "Gérant",
            "functions": ["accountant"],
            "primary": True,
        },
        {"customer_external_id": "C100", "email": "compta@martin.example", "valid": True},
    ],
    "invoices": [
        {
            "external_id": "INV-2026-0042",
            "customer_external_id": "C100",
            "number": "FA-0042",
            "issue_date": "2026-09-01",
            "due_date": "2026-10-01",
            "amount": "1200.00",
            "outstanding": "1200.00",
        },
    ],
    "payments": [
        {
            "external_id": "PAY-981",
            "invoice_external_id": "INV-2026-0042",
            "date": "2026-10-15",
            "amount": 200,
            "kind": "payment",
        },
    ],
}

ERRORS: dict[int, tuple[str, type[BaseModel]]] = {
    400: ("The request is malformed (body, parameters).", Error),
    401: ("No token, or one that does not work (unknown, revoked, its member gone).", Error),
    403: ("The token may only read.", Error),
    404: ("No such customer.", Error),
    409: ("No config applied yet, or another request wrote the same items at the same time.", Error),
    413: (f"More than {MAX_ITEMS:,} items, or a body over {MAX_BODY_TEXT}.", Error),
    422: ("Some items are invalid (each listed by index and field): nothing was written.", ItemErrors),
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _items_body(kind: str) -> dict[str, Any]:
    array = {"type": "array", "items": _ref(ITEM_MODELS[kind]), "maxItems": MAX_ITEMS}
    wrapped = {"type": "object", "properties": {"items": array}, "required": ["items"], "additionalProperties": False}
    content = _json({"oneOf": [array, wrapped]})
    content["application/json"]["examples"] = {kind: {"summary": f"{kind}, as a system pushes them", "value": EXAMPLES[kind]}}
    return {
        "required": True,
        "description": f'A JSON array of {kind} (or {{"items": [...]}}), at most {MAX_ITEMS:,} and {MAX_BODY_TEXT}.',
        "content": content,
    }


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in _path_names(endpoint.path):
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    for p in endpoint.params:
        schema: dict[str, Any] = {"type": "integer" if p.type == "int" else "string"}
        for key, value in (("minimum", p.minimum), ("maximum", p.maximum), ("default", p.default)):
            if value is not None:
                schema[key] = value
        if p.choices:
            schema["enum"] = list(p.choices)
        params.append({"name": p.name, "in": "query", "required": False, "description": p.description, "schema": schema})
    return params


def _path_names(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.operation,
        "summary": endpoint.summary,
        "tags": ["ledger" if endpoint.body else "reads"],
        "security": [{"bearer": []}],
        "parameters": _parameters(endpoint),
        "responses": {"200": {"description": "Done.", "content": _json(_ref(endpoint.response))}},
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    if endpoint.body:
        operation["requestBody"] = _items_body(endpoint.body)
    for status in sorted({401, *endpoint.errors}):
        description, model = ERRORS[status]
        operation["responses"][str(status)] = {"description": description, "content": _json(_ref(model))}
    return operation


def build_openapi(endpoints: list[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``endpoints`` (and itself)."""
    answers = {e.response for e in endpoints} | {m for _, m in ERRORS.values()}
    inputs = [(m, "validation") for m in ITEM_MODELS.values()]
    outputs = [(m, "serialization") for m in sorted(answers, key=lambda m: m.__name__)]
    _, schemas = models_json_schema([*inputs, *outputs], ref_template=REF)  # type: ignore[list-item]
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(PREFIX + endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    paths[PREFIX + OPENAPI_PATH] = {
        "get": {
            "operationId": "openapi",
            "summary": "This description (no token needed).",
            "tags": ["meta"],
            "security": [],
            "responses": {"200": {"description": "The OpenAPI 3.1 document.", "content": _json({"type": "object"})}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dunningops API",
            "version": __version__,
            "description": (
                "Push the ledger (customers, contacts, invoices, payments) as the accounting system has it, and read "
                "customers' state, to-dos and message history. Upserts take the same items as `dunningops ledger "
                "import` and check them the same way: all of a request's items are written, or none. "
                "Authenticate with a token from `dunningops token create` (Authorization: Bearer <token>)."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A token from `dunningops token create`."}
            },
        },
    }
