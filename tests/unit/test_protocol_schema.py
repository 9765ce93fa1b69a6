"""Tests of the JSON Schema subset validator (protocol.schema)."""

from __future__ import annotations

from typing import Any

import pytest

from corral.protocol.errors import InvalidParams
from corral.protocol.schema import SchemaError, compile_schema, validate


def bad(schema: dict, value: object, path: str = "") -> InvalidParams:
    with pytest.raises(InvalidParams) as info:
        validate(schema, value, path)
    return info.value


@pytest.mark.parametrize(
    ("type_", "good", "wrong"),
    [
        ("string", ["", "x"], [1, None, True, [], {}]),
        ("integer", [0, -3, 10**20], [1.0, 1.5, True, False, "1", None]),
        ("number", [0, 1.5, -2], [True, "1", None, []]),
        ("boolean", [True, False], [0, 1, "true", None]),
        ("object", [{}, {"a": 1}], [[], "x", None, 1]),
        ("array", [[], [1, "a"]], [{}, "x", None]),
        ("null", [None], [0, "", False, {}]),
    ],
)
def test_type(type_: str, good: list, wrong: list) -> None:
    for v in good:
        validate({"type": type_}, v)
    for v in wrong:
        err = bad({"type": type_}, v, "f")
        assert err.field == "f"
        assert err.data["reason"] == "invalid_params"


def test_type_list_and_root_field() -> None:
    schema = {"type": ["string", "null"]}
    validate(schema, None)
    validate(schema, "x")
    err = bad(schema, 3)
    assert err.field is None
    assert "a string or null" in err.message


def test_bool_is_not_a_number_for_bounds_or_enum() -> None:
    err = bad({"type": "integer", "minimum": 0}, True, "n")
    assert err.field == "n"
    err = bad({"enum": [1, 2]}, True, "e")
    assert err.field == "e"
    validate({"enum": [1, 2]}, 1)
    validate({"enum": [1.0]}, 1)


def test_string_length_is_in_characters_and_bytes_in_utf8() -> None:
    schema = {"type": "string", "minLength": 2, "maxLength": 3}
    validate(schema, "éé")
    validate(schema, "ééé")
    assert bad(schema, "é").message.endswith("at least 2 characters")
    bad(schema, "éééé")
    assert "must not be empty" in bad({"minLength": 1}, "").message

    by = {"type": "string", "maxBytes": 4}
    validate(by, "abcd")
    validate(by, "éé")  # 4 bytes
    bad(by, "abcde")
    bad(by, "ééa")  # 5 bytes, 3 characters
    bad(by, "€€")  # 6 bytes
    validate(by, "😀")  # one 4-byte code point
    bad(by, "😀a")


def test_max_bytes_large() -> None:
    schema = {"type": "string", "maxBytes": 256 * 1024}
    validate(schema, "a" * 256 * 1024)
    bad(schema, "a" * (256 * 1024 + 1))
    validate(schema, "é" * (128 * 1024))
    bad(schema, "é" * (128 * 1024) + "a")


def test_pattern_is_a_full_match() -> None:
    schema = {"type": "string", "pattern": "^[a-z]+$"}
    validate(schema, "abc")
    bad(schema, "abc\n")  # re.match would accept this with $
    bad(schema, "ab1")
    unanchored = {"pattern": "[a-z]+"}
    bad(unanchored, "abc1")  # fullmatch even without anchors


def test_minimum_maximum() -> None:
    schema = {"type": "number", "minimum": 1, "maximum": 2.5}
    validate(schema, 1)
    validate(schema, 2.5)
    assert bad(schema, 0.99).message.endswith(">= 1")
    assert bad(schema, 3).message.endswith("<= 2.5")


def test_enum_and_const() -> None:
    validate({"enum": ["a", "b"]}, "a")
    bad({"enum": ["a", "b"]}, "c")
    bad({"enum": ["a", "b"]}, 1)
    validate({"enum": [None, 1]}, None)
    validate({"const": True}, True)
    bad({"const": True}, 1)
    bad({"const": 1}, True)
    validate({"const": [1, {"a": "b"}]}, [1, {"a": "b"}])
    bad({"const": [1, {"a": "b"}]}, [1, {"a": "c"}])


def test_object_keywords_and_paths() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "cfg": {
                "type": "object",
                "properties": {"turns": {"type": "integer", "minimum": 1}},
            },
            "env": {
                "type": "object",
                "propertyNames": {"pattern": "^[A-Z_]+$"},
                "additionalProperties": {"type": "string"},
                "maxProperties": 2,
            },
        },
        "required": ["a"],
        "additionalProperties": False,
    }
    validate(schema, {"a": 1, "cfg": {"turns": 2, "other": "x"}, "env": {"FOO": "1"}})
    assert bad(schema, {}).field == "a"
    assert "missing" in bad(schema, {}).message
    assert bad(schema, {"a": 1, "zzz": 2}).field == "zzz"
    assert "unknown" in bad(schema, {"a": 1, "zzz": 2}).message
    assert bad(schema, {"a": 1, "cfg": {"turns": 0}}).field == "cfg.turns"
    assert bad(schema, {"a": 1, "env": {"FOO": 1}}).field == "env.FOO"
    assert bad(schema, {"a": 1, "env": {"foo": "1"}}).field == "env.foo"
    assert bad(schema, {"a": 1, "env": {"A": "", "B": "", "C": ""}}).field == "env"
    # a path prefix is prepended
    assert bad(schema, {}, "params").field == "params.a"


def test_first_bad_field_in_value_order_then_missing() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}, "c": {}},
        "required": ["c"],
        "additionalProperties": False,
    }
    assert bad(schema, {"b": 1, "a": 1}).field == "b"
    assert bad(schema, {"a": 1, "b": 1}).field == "a"
    assert bad(schema, {"x": 1, "a": 1}).field == "x"
    assert bad(schema, {"a": "ok"}).field == "c"
    assert bad(schema, {"a": 1}).field == "a"  # a bad value is reported before a missing one


def test_additional_properties_schema_and_min_properties() -> None:
    schema = {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 1}
    validate(schema, {"x": 1})
    assert bad(schema, {"x": "1"}).field == "x"
    bad(schema, {})


def test_array_keywords_and_paths() -> None:
    schema = {
        "type": "array",
        "items": {"type": "string", "minLength": 1},
        "minItems": 1,
        "maxItems": 3,
    }
    validate(schema, ["a"])
    validate(schema, ("a", "b"))
    assert bad(schema, ["a", "b", ""], "dirs").field == "dirs.2"
    assert bad(schema, []).message.endswith("at least 1 items")
    bad(schema, ["a"] * 4)
    nested = {"type": "object", "properties": {"l": {"type": "array", "items": schema}}}
    assert bad(nested, {"l": [["a"], ["b", 3]]}).field == "l.1.1"


def test_keywords_apply_to_their_kind_only() -> None:
    schema = {"maxLength": 1, "minimum": 3, "properties": {"a": {"type": "string"}}, "items": {}}
    validate(schema, 5)
    validate(schema, "x")
    validate(schema, [1, 2])
    validate(schema, {"b": 1})
    bad(schema, 2)
    bad(schema, "xy")
    bad(schema, {"a": 1})


def test_malformed_schemas_are_refused() -> None:
    schemas: tuple[dict[str, Any], ...] = (
        {"type": "str"},
        {"maxLenght": 3},
        {"pattern": "("},
        {"minLength": -1},
        {"minimum": "1"},
        {"enum": []},
        {"properties": {"a": 3}},
        {"additionalProperties": "no"},
        {"required": "a"},
        {"items": []},
    )
    for schema in schemas:
        with pytest.raises(SchemaError):
            compile_schema(schema)


def test_annotations_are_ignored_and_cache_is_per_object() -> None:
    schema = {"type": "string", "description": "d", "title": "t", "default": "x"}
    validate(schema, "y")
    other = {"type": "integer"}
    validate(other, 1)
    bad(other, "y")
    v = compile_schema({"type": "string", "maxBytes": 1})
    v("a")
    with pytest.raises(InvalidParams):
        v("ab", "p")


def test_huge_field_names_are_cut_in_errors() -> None:
    schema = {"type": "object", "additionalProperties": False}
    err = bad(schema, {"k" * 100_000: 1})
    assert err.field is not None
    assert len(err.field) < 300
    assert len(err.message) < 400
