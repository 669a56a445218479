"""A small JSON-Schema validator for the keywords the vendored schemas use (deploy/schemas/): no jsonschema package
is installed here. Unknown keywords fail loudly rather than being skipped."""

from __future__ import annotations

import re
from typing import Any

TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}
ANNOTATIONS = {"$schema", "$comment", "$defs", "title", "description"}


def errors(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None, at: str = "$") -> list[str]:
    """Every violation of `schema` by `value`, as `path: problem`; empty when valid."""
    root = root or schema
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return errors(value, target, root, at)
    unknown = set(schema) - ANNOTATIONS - {
        "type", "properties", "required", "additionalProperties", "items", "enum", "minimum", "pattern", "anyOf"
    }  # fmt: skip
    if unknown:
        raise ValueError(f"{at}: schema keyword(s) {sorted(unknown)} not supported")
    if "type" in schema:
        kind = TYPES[schema["type"]]
        if not isinstance(value, kind) or (isinstance(value, bool) and schema["type"] in ("integer", "number")):
            return [f"{at}: expected {schema['type']}, got {type(value).__name__}"]
    if "anyOf" in schema and all(errors(value, option, root, at) for option in schema["anyOf"]):
        return [f"{at}: {value!r} matches none of {schema['anyOf']}"]
    found = []
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{at}: {value!r} not one of {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"]:
        found.append(f"{at}: {value} < minimum {schema['minimum']}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        found.append(f"{at}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        found += [f"{at}: missing required {key!r}" for key in schema.get("required", []) if key not in value]
        props, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                found += errors(item, props[key], root, f"{at}.{key}")
            elif extra is False:
                found.append(f"{at}: unknown field {key!r}")
            elif isinstance(extra, dict):
                found += errors(item, extra, root, f"{at}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += errors(item, schema["items"], root, f"{at}[{i}]")
    return found
