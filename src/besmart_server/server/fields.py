"""Checks and conversions of the free-form fields every catalog row carries.

Sensors, sensor states, signal states and meter types all take JSON-in-a-query-string
fields (`info`, `custom_fields`) and free text; one module so the 422s read the same.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from jsonschema import Draft202012Validator, SchemaError
from jsonschema.exceptions import best_match

from besmart_server.server.errors import Invalid


def parse_json(text: str, field: str, *, object_only: bool = True) -> Any:
    """A JSON-in-string query parameter: 422 at ("query", field) when it is not JSON (or,
    with `object_only`, neither an object nor null)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Invalid(
            f"{field} is not valid JSON: {exc}", loc=("query", field), type_="json_invalid"
        ) from exc
    if object_only and value is not None and not isinstance(value, dict):
        raise Invalid(f"{field} must be a JSON object", loc=("query", field), type_="dict_type")
    return value


def nul_in_json(value: Any, loc: list[str | int]) -> list[str | int] | None:
    """Where in a parsed JSON document a string (or an object key) holds U+0000, which
    PostgreSQL cannot store in text: the HTTP bodies' and the MQTT payloads' one check."""
    if isinstance(value, str):
        return loc if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return loc
            found = nul_in_json(item, [*loc, key])
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = nul_in_json(item, [*loc, i])
            if found is not None:
                return found
    return None


def dump_json(value: Any) -> str | None:
    """JSON text to store (None stays NULL)."""
    return None if value is None else orjson.dumps(value).decode()


def load_json(text: str | None) -> Any:
    """A stored JSON column as a JSON value."""
    return None if text is None else orjson.loads(text)


@functools.lru_cache(maxsize=256)
def _validator(schema_text: str) -> Draft202012Validator | None:
    try:
        schema = orjson.loads(schema_text)
        Draft202012Validator.check_schema(schema)
    except (orjson.JSONDecodeError, SchemaError):
        return None  # a broken custom schema must not make every write fail
    return Draft202012Validator(schema)


def check_custom_fields(value: Any, schema_text: str | None, *, field: str, what: str) -> None:
    """422 at ("query", field) when `value` breaks the type's JSON Schema (Draft 2020-12)."""
    if value is None or not schema_text:
        return
    validator = _validator(schema_text)
    if validator is None:
        return
    error = best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        at = f" at '{where}'" if where else ""
        raise Invalid(
            f"{field} does not match the custom fields of {what}{at}: {error.message}",
            loc=("query", field),
            type_="json_schema",
        )


def check_text(value: str | None, field: str) -> None:
    """422 for text no database can store: NUL characters (PostgreSQL rejects them)."""
    if value is not None and "\x00" in value:
        raise Invalid(
            f"{field} must not contain NUL characters", loc=("query", field), type_="string_nul"
        )
