"""Structured output: a JSON schema (or "any JSON object") as a llama.cpp grammar. Pure.

The grammar comes from the JSON-schema converter llama-cpp-python ships
(`llama_cpp.llama_grammar.SchemaConverter`). That converter skips what it does not understand
(`minimum`, `not`, `oneOf`'s exclusivity, a `pattern` beside `minLength`...), which would make a
grammar looser than the schema and output that does not validate. So every schema is walked
first: the keywords the grammar enforces pass, annotations (title, description...) are dropped,
and anything else is refused by name, with the path to where it is.
"""

from __future__ import annotations

import json
from typing import Any

from llama_cpp.llama_grammar import SchemaConverter

from hearth.errors import InvalidRequest

MAX_GRAMMAR = 64 * 1024
"""The engine's limit on a grammar's text."""
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "$schema", "$id",
                         "deprecated", "readOnly", "writeOnly", "discriminator"})
"""Keywords that constrain nothing: dropped before conversion."""
FORMATS = frozenset({"date", "time", "date-time", "uuid"})
"""String formats the converter's grammar enforces."""
TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
OBJECT_KEYS = frozenset({"type", "properties", "required", "additionalProperties"})
ARRAY_KEYS = frozenset({"type", "items", "prefixItems", "minItems", "maxItems"})
STRING_KEYS = frozenset({"type", "minLength", "maxLength", "pattern", "format"})
JSON_OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}
LOOSE_CHAR = 'char ::= [^"\\\\] |'
STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'
ANY: dict[str, Any] = {"anyOf": [{"type": t} for t in sorted(TYPES)]}
"""The schema {} (any JSON value): the converter alone would read it as "an object"."""


class _Walk:
    """Checks a schema against what the grammar enforces; returns it without annotations."""

    def __init__(self, field: str) -> None:
        self.field = field

    def refuse(self, where: str, what: str) -> InvalidRequest:
        at = f"{self.field}{where}"
        return InvalidRequest(f"The JSON schema at '{at}' uses {what}, which hearth's grammar-constrained "
                              "sampling cannot enforce; remove it or describe the constraint in the prompt.",
                              param=self.field)

    def schema(self, node: Any, where: str) -> Any:
        if isinstance(node, bool):
            if node:
                return {}
            raise self.refuse(where, "the schema false (nothing validates)")
        if not isinstance(node, dict):
            raise InvalidRequest(f"'{self.field}{where}' must be a JSON schema (an object).", param=self.field)
        node = {k: v for k, v in node.items() if k not in ANNOTATIONS}
        out: dict[str, Any] = {}
        for key in ("$defs", "definitions"):
            if key in node:
                defs = node.pop(key)
                if not isinstance(defs, dict):
                    raise InvalidRequest(f"'{self.field}{where}.{key}' must be an object.", param=self.field)
                out[key] = {n: self.schema(s, f"{where}.{key}.{n}") for n, s in defs.items()}
        return out | (self._constraint(node, where) or ANY)

    def _constraint(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        if "$ref" in node:
            self._alone(node, "$ref", where)
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/"):
                raise self.refuse(where, f"a $ref other than a local '#/...' one ({ref!r})")
            return {"$ref": ref}
        if "anyOf" in node:
            self._alone(node, "anyOf", where)
            alts = node["anyOf"]
            if not isinstance(alts, list) or not alts:
                raise InvalidRequest(f"'{self.field}{where}.anyOf' must be a non-empty list.", param=self.field)
            return {"anyOf": [self.schema(a, f"{where}.anyOf[{i}]") for i, a in enumerate(alts)]}
        for key in ("const", "enum"):
            if key in node:
                self._alone(node, key, where, also={"type"})
                if key == "enum" and (not isinstance(node["enum"], list) or not node["enum"]):
                    raise InvalidRequest(f"'{self.field}{where}.enum' must be a non-empty list.", param=self.field)
                return {key: node[key]}
        kind = node.get("type")
        if isinstance(kind, list):
            self._alone(node, "type", where)
            if not kind or any(t not in TYPES for t in kind):
                raise self.refuse(where, f"the type list {kind!r}")
            return {"anyOf": [{"type": t} for t in kind]}
        if kind is not None and kind not in TYPES:
            raise self.refuse(where, f"the type {kind!r}")
        if kind == "object" or (kind is None and {"properties", "additionalProperties"} & node.keys()):
            return self._object(node, where)
        if kind == "array" or (kind is None and {"items", "prefixItems"} & node.keys()):
            return self._array(node, where)
        if kind == "string" or (kind is None and STRING_KEYS & node.keys()):
            return self._string(node, where)
        self._only(node, {"type"}, where)
        return node if kind is not None else {}

    def _alone(self, node: dict[str, Any], key: str, where: str, also: frozenset[str] | set[str] = frozenset()) -> None:
        others = sorted(set(node) - {key} - set(also))
        if others:
            raise self.refuse(where, f"{', '.join(others)} beside {key}")

    def _only(self, node: dict[str, Any], allowed: frozenset[str] | set[str], where: str) -> None:
        extra = sorted(set(node) - set(allowed))
        if extra:
            raise self.refuse(where, ", ".join(extra))

    def _object(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        self._only(node, OBJECT_KEYS, where)
        props = node.get("properties", {})
        if not isinstance(props, dict):
            raise InvalidRequest(f"'{self.field}{where}.properties' must be an object.", param=self.field)
        required = node.get("required", [])
        if not isinstance(required, list) or any(r not in props for r in required):
            raise self.refuse(where, "'required' naming properties it does not define")
        out: dict[str, Any] = {"type": "object",
                               "properties": {n: self.schema(s, f"{where}.properties.{n}") for n, s in props.items()},
                               "required": list(required)}
        extra = node.get("additionalProperties", False if props else True)
        if extra is not True:
            out["additionalProperties"] = extra if extra is False else self.schema(
                extra, f"{where}.additionalProperties")
        elif not props:
            return {"type": "object"}  # any object
        else:
            out["additionalProperties"] = True
        return out

    def _array(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        self._only(node, ARRAY_KEYS, where)
        if "prefixItems" in node:
            if node.get("items", False) is not False or {"minItems", "maxItems"} & node.keys():
                raise self.refuse(where, "prefixItems with items, minItems or maxItems")
            tuple_ = node["prefixItems"]
            if not isinstance(tuple_, list) or not tuple_:
                raise InvalidRequest(f"'{self.field}{where}.prefixItems' must be a non-empty list.", param=self.field)
            return {"type": "array", "prefixItems": [self.schema(s, f"{where}.prefixItems[{i}]")
                                                     for i, s in enumerate(tuple_)]}
        out = {k: node[k] for k in ("minItems", "maxItems") if k in node}
        items = node.get("items", {})
        if isinstance(items, list):
            raise self.refuse(where, "items as a list (use prefixItems)")
        return out | {"type": "array", "items": self.schema(items, f"{where}.items")}

    def _string(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        self._only(node, STRING_KEYS, where)
        if "format" in node:
            if node["format"] not in FORMATS:
                raise self.refuse(where, f"the string format {node['format']!r}")
            self._alone(node, "format", where, also={"type"})
        if "pattern" in node:
            self._alone(node, "pattern", where, also={"type"})
            pattern = node["pattern"]
            if not isinstance(pattern, str) or not pattern.startswith("^") or not pattern.endswith("$"):
                raise self.refuse(where, "a pattern not anchored with ^ and $")
        return node | {"type": "string"}


def checked_schema(schema: Any, field: str) -> dict[str, Any]:
    """`schema` without annotations, or InvalidRequest naming `field` (the request's field path)
    and what in the schema the grammar cannot enforce."""
    return dict(_Walk(field).schema(schema, ""))


def schema_grammar(schema: Any, field: str) -> str:
    """The GBNF grammar of JSON values that validate against `schema`, or InvalidRequest."""
    return grammar_of(checked_schema(schema, field), field)


def grammar_of(checked: dict[str, Any], field: str) -> str:
    """The converter's grammar for a schema `checked_schema` passed; JSON strings without raw
    control characters (the converter's allow them, and no JSON parser takes them)."""
    make: Any = SchemaConverter  # untyped upstream
    converter = make(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    try:
        converter.visit(converter.resolve_refs(checked, "input"), "")
        grammar = str(converter.format_grammar()).replace(LOOSE_CHAR, STRICT_CHAR)
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InvalidRequest(f"The JSON schema in '{field}' cannot be made into a grammar ({exc}); "
                             "simplify it.", param=field) from None
    if len(grammar) > MAX_GRAMMAR:
        raise InvalidRequest(f"The JSON schema in '{field}' makes a grammar of {len(grammar)} bytes, over "
                             f"hearth's {MAX_GRAMMAR}; simplify it.", param=field)
    return grammar


def json_object_grammar() -> str:
    """Any JSON object (OpenAI's json_object, Ollama's format "json")."""
    return schema_grammar(JSON_OBJECT_SCHEMA, "response_format")


def ollama_format_grammar(fmt: Any) -> str | None:
    """Ollama's `format`: absent or "" (none), "json", or a JSON schema."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return json_object_grammar()
    if isinstance(fmt, dict):
        return schema_grammar(fmt, "format")
    raise InvalidRequest(f"format must be \"json\" or a JSON schema object, not {json.dumps(fmt)[:40]}.",
                         param="format")
