"""JSON Schema as harmony can render it.

harmony turns a tool's JSON Schema into the TypeScript-like text the model
reads. Its renderer understands a subset: primitive types and type lists
(``number | null``), string enums, nested objects, arrays, ``oneOf`` unions,
descriptions and defaults. What pydantic and MCP servers produce goes beyond
it, and what falls outside is shown to the model as ``any``: ``anyOf`` (every
``Optional``), ``$ref`` into ``$defs`` (every nested model and enum),
``allOf`` wrappers, ``const``, numeric enums. A model told ``a?: any`` guesses,
so every description is normalised here, once, before it is rendered:

* ``$ref`` is inlined and ``title`` dropped;
* ``anyOf``/``oneOf``/single ``allOf`` are folded: primitive variants become a
  type list (``number | string | null``), anything richer stays a ``oneOf``
  whose ``null`` variant renders as ``null`` rather than ``any``;
* ``const`` becomes a one-value enum; enums that are not strings keep their
  values in the description;
* a function without parameters renders as ``() => any``.
"""

from __future__ import annotations

import copy
from typing import Any

from openai_harmony import ToolDescription

_PRIMITIVES = frozenset({"string", "number", "integer", "boolean"})
_MAX_REF_DEPTH = 20
_OUTER_KEYS = ("description", "default", "examples")


def normalize_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` that harmony renders faithfully (see the module's docstring)."""
    schema = copy.deepcopy(schema)
    definitions = {**schema.pop("definitions", {}), **schema.pop("$defs", {})}
    return _normalize(schema, definitions, 0)


def normalize_description(description: ToolDescription) -> ToolDescription:
    """The tool's description with its parameters normalised; no parameters render as ``() => any``."""
    parameters = description.parameters
    if isinstance(parameters, dict):
        parameters = normalize_schema(parameters)
        if parameters.get("type", "object") == "object" and not parameters.get("properties"):
            parameters = None
    elif parameters is not None:
        parameters = None
    return ToolDescription.new(description.name, description.description, parameters=parameters)


def _normalize(node: Any, definitions: dict[str, Any], depth: int) -> Any:
    if isinstance(node, list):
        return [_normalize(item, definitions, depth) for item in node]
    if not isinstance(node, dict):
        return node
    node = _resolve_ref(node, definitions, depth)
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key == "properties" and isinstance(value, dict):
            result[key] = {name: _normalize(prop, definitions, depth + 1) for name, prop in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "not"):
            result[key] = _normalize(value, definitions, depth + 1)
        else:
            result[key] = value
    result = _fold_all_of(result)
    result = _fold_union(result)
    result = _fold_const(result)
    return _describe_enum(result)


def _resolve_ref(node: dict[str, Any], definitions: dict[str, Any], depth: int) -> dict[str, Any]:
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node
    name = ref.rsplit("/", 1)[-1]
    if depth >= _MAX_REF_DEPTH or name not in definitions:
        # A recursive model: past the depth bound it is shown as an object, honestly untyped.
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {"type": "object", **rest}
    target = copy.deepcopy(definitions[name])
    extra = {k: v for k, v in node.items() if k != "$ref"}
    return _resolve_ref({**target, **extra}, definitions, depth + 1)


def _fold_all_of(node: dict[str, Any]) -> dict[str, Any]:
    parts = node.get("allOf")
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        return node
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if key == "properties" and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            elif key == "required" and isinstance(merged.get(key), list):
                merged[key] = [*merged[key], *[r for r in value if r not in merged[key]]]
            else:
                merged[key] = value
    rest = {k: v for k, v in node.items() if k != "allOf"}
    return {**merged, **rest}


def _is_null(variant: Any) -> bool:
    return isinstance(variant, dict) and (
        variant.get("type") == "null"
        or variant.get("type") == ["null"]
        or variant.get("enum") == [None]
        or ("const" in variant and variant["const"] is None)
    )


def _plain_primitive(variant: dict[str, Any]) -> str | None:
    """The type of a variant that carries nothing harmony would lose in a type list, else None."""
    kind = variant.get("type")
    if kind in _PRIMITIVES and not {"enum", "const", "properties", "items", "oneOf", "anyOf"} & set(variant):
        return kind
    return None


def _fold_union(node: dict[str, Any]) -> dict[str, Any]:
    key = "anyOf" if isinstance(node.get("anyOf"), list) else "oneOf" if isinstance(node.get("oneOf"), list) else None
    if key is None:
        return node
    variants = node[key]
    outer = {k: v for k, v in node.items() if k != key}
    nullable = any(_is_null(v) for v in variants)
    others = [v for v in variants if not _is_null(v)]
    kinds = [_plain_primitive(v) if isinstance(v, dict) else None for v in others]
    if others and all(kinds):
        unique = list(dict.fromkeys(kinds))
        if "integer" in unique and "number" in unique:
            unique.remove("integer")
        types = [*unique, "null"] if nullable else unique
        folded = {**{k: v for v in others for k, v in v.items() if k != "type"}, **outer}
        folded["type"] = types[0] if len(types) == 1 else types
        return folded
    if len(others) == 1 and not nullable:
        return {**others[0], **outer}
    if not others:
        return {**outer, "type": "null"}
    union = [*others, {"type": ["null"]}] if nullable else others
    return {**outer, "oneOf": union}


def _fold_const(node: dict[str, Any]) -> dict[str, Any]:
    if "const" in node and "enum" not in node:
        node = {**node, "enum": [node["const"]]}
        del node["const"]
    return node


def _describe_enum(node: dict[str, Any]) -> dict[str, Any]:
    values = node.get("enum")
    if not isinstance(values, list):
        return node
    strings = [v for v in values if isinstance(v, str)]
    if len(strings) == len(values):
        return {**node, "type": "string"} if "type" not in node else node
    # harmony renders only string enums; keep the allowed values where the model reads them.
    allowed = (
        "Allowed values: "
        + ", ".join(
            "null"
            if v is None
            else repr(v)
            if isinstance(v, str)
            else str(v).lower()
            if isinstance(v, bool)
            else str(v)
            for v in values
        )
        + "."
    )
    description = node.get("description")
    result = {k: v for k, v in node.items() if k != "enum"}
    result["description"] = f"{description} {allowed}" if description else allowed
    if "type" not in result:
        types = {
            "boolean" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else "string"
            for v in values
            if v is not None
        }
        if len(types) == 1:
            result["type"] = types.pop()
    return result
