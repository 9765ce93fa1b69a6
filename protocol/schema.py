"""A small, fast JSON Schema subset validator for request params and results.

Supported keywords: ``type`` (a name or a list of names; ``bool`` is never an
``integer``/``number``, and a float is never an ``integer``), ``properties``,
``required``, ``additionalProperties`` (``false`` or a schema), ``propertyNames``,
``minProperties``/``maxProperties``, ``minLength``/``maxLength`` (characters),
``maxBytes`` (a corral extension: UTF-8 byte length), ``pattern`` (matched with
:func:`re.fullmatch`), ``minimum``/``maximum``, ``enum``, ``const``, ``items``,
``minItems``/``maxItems``. Annotations (``description``, ``title``, ``default``,
``examples``, ``$comment``) are ignored; any other keyword is a bug in the schema
and is refused when the schema is compiled.

Keywords apply only to values of their kind (``maxLength`` to strings,
``properties`` to objects, ...), as in JSON Schema. Schemas are compiled once
into nested checks; :func:`validate` caches the compiled form per schema object.

Errors are :class:`~protocol.errors.InvalidParams` whose ``field`` is the dotted
path of the first bad field (``providerConfig.turns``, ``extraEnv.FOO``,
``additionalDirectories.2``). An object's members are checked in the order they
appear in the value (an unknown member is bad where it appears), then missing
required members in the schema's ``required`` order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from corral.protocol.errors import InvalidParams

__all__ = ["SchemaError", "Validator", "compile_schema", "validate"]

Check = Callable[[Any, str], None]

_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "$comment"})
_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "maxBytes",
        "pattern",
        "minimum",
        "maximum",
        "enum",
        "const",
        "items",
        "minItems",
        "maxItems",
    }
)


class SchemaError(ValueError):
    """The schema itself is malformed (a programming error, not bad input)."""


def _is_string(v: object) -> bool:
    return isinstance(v, str)


def _is_integer(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_boolean(v: object) -> bool:
    return isinstance(v, bool)


def _is_object(v: object) -> bool:
    return isinstance(v, dict)


def _is_array(v: object) -> bool:
    return isinstance(v, list | tuple)


def _is_null(v: object) -> bool:
    return v is None


_TYPES: dict[str, Callable[[object], bool]] = {
    "string": _is_string,
    "integer": _is_integer,
    "number": _is_number,
    "boolean": _is_boolean,
    "object": _is_object,
    "array": _is_array,
    "null": _is_null,
}

_ARTICLE = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


MAX_FIELD_CHARS = 256
"""Longer field paths (client-chosen member names) are cut in errors."""


def _shown(path: str) -> str:
    return path if len(path) <= MAX_FIELD_CHARS else path[:MAX_FIELD_CHARS] + "..."


def _fail(path: str, message: str) -> NoReturn:
    shown = _shown(path)
    raise InvalidParams(f"{shown or 'value'}: {message}", field=shown or None)


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def _same(a: object, b: object) -> bool:
    """JSON equality: no bool/number confusion, 1 == 1.0 for numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _as_int(schema: Mapping[str, Any], key: str) -> int | None:
    v = schema.get(key)
    if v is None:
        return None
    if not _is_integer(v) or v < 0:
        raise SchemaError(f"{key} must be a non-negative integer, got {v!r}")
    return int(v)


def _string_checks(schema: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    min_len = _as_int(schema, "minLength")
    max_len = _as_int(schema, "maxLength")
    max_bytes = _as_int(schema, "maxBytes")
    pattern = schema.get("pattern")

    if min_len is not None:
        n_min = min_len

        def check_min_len(v: str, path: str) -> None:
            if len(v) < n_min:
                _fail(
                    path,
                    "must not be empty" if n_min == 1 else f"must be at least {n_min} characters",
                )

        checks.append(check_min_len)
    if max_len is not None:
        n_max = max_len

        def check_max_len(v: str, path: str) -> None:
            if len(v) > n_max:
                _fail(path, f"must be at most {n_max} characters")

        checks.append(check_max_len)
    if max_bytes is not None:
        b_max = max_bytes
        safe_chars = b_max // 4  # a code point is at most 4 UTF-8 bytes

        def check_max_bytes(v: str, path: str) -> None:
            n = len(v)
            if n <= safe_chars:
                return
            if n > b_max or _utf8_len(v) > b_max:
                _fail(path, f"must be at most {b_max} bytes (UTF-8)")

        checks.append(check_max_bytes)
    if pattern is not None:
        if not isinstance(pattern, str):
            raise SchemaError(f"pattern must be a string, got {pattern!r}")
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise SchemaError(f"bad pattern {pattern!r}: {exc}") from exc
        fullmatch = rx.fullmatch

        def check_pattern(v: str, path: str) -> None:
            if fullmatch(v) is None:
                _fail(path, f"must match {pattern}")

        checks.append(check_pattern)
    return checks


def _number_checks(schema: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    minimum = schema.get("minimum")
    maximum = schema.get("maximum")
    for key, bound in (("minimum", minimum), ("maximum", maximum)):
        if bound is not None and not _is_number(bound):
            raise SchemaError(f"{key} must be a number, got {bound!r}")
    if minimum is not None:
        lo = minimum

        def check_minimum(v: float, path: str) -> None:
            if v < lo:
                _fail(path, f"must be >= {lo}")

        checks.append(check_minimum)
    if maximum is not None:
        hi = maximum

        def check_maximum(v: float, path: str) -> None:
            if v > hi:
                _fail(path, f"must be <= {hi}")

        checks.append(check_maximum)
    return checks


def _object_checks(schema: Mapping[str, Any], where: str) -> list[Check]:
    checks: list[Check] = []
    min_props = _as_int(schema, "minProperties")
    max_props = _as_int(schema, "maxProperties")
    raw_props = schema.get("properties")
    required = schema.get("required")
    additional = schema.get("additionalProperties")
    names = schema.get("propertyNames")

    if raw_props is None and required is None and additional in (None, True) and names is None:
        pass
    else:
        if raw_props is not None and not isinstance(raw_props, Mapping):
            raise SchemaError(f"{where}: properties must be an object")
        props: dict[str, Check] = {
            str(k): _compile(sub, f"{where}.properties.{k}") for k, sub in (raw_props or {}).items()
        }
        if required is not None and (
            not isinstance(required, list | tuple) or not all(isinstance(r, str) for r in required)
        ):
            raise SchemaError(f"{where}: required must be a list of strings")
        req: tuple[str, ...] = tuple(required or ())
        closed = additional is False
        extra: Check | None = None
        if isinstance(additional, Mapping):
            extra = _compile(additional, f"{where}.additionalProperties")
        elif additional not in (None, True, False):
            raise SchemaError(f"{where}: additionalProperties must be a boolean or a schema")
        key_check = _compile(names, f"{where}.propertyNames") if names is not None else None

        def check_members(v: dict[Any, Any], path: str) -> None:
            for k, item in v.items():
                p = f"{path}.{k}" if path else str(k)
                if key_check is not None:
                    try:
                        key_check(k, p)
                    except InvalidParams as exc:
                        why = exc.message.partition(": ")[2]
                        shown = _shown(p)
                        raise InvalidParams(
                            f"{shown}: bad member name ({why})", field=shown
                        ) from None
                sub = props.get(k)
                if sub is not None:
                    sub(item, p)
                elif closed:
                    _fail(p, "unknown field")
                elif extra is not None:
                    extra(item, p)
            for r in req:
                if r not in v:
                    _fail(_join(path, r), "required field is missing")

        checks.append(check_members)
    if min_props is not None:
        lo = min_props

        def check_min_props(v: dict[Any, Any], path: str) -> None:
            if len(v) < lo:
                _fail(path, f"must have at least {lo} members")

        checks.insert(0, check_min_props)
    if max_props is not None:
        hi = max_props

        def check_max_props(v: dict[Any, Any], path: str) -> None:
            if len(v) > hi:
                _fail(path, f"must have at most {hi} members")

        checks.insert(0, check_max_props)
    return checks


def _array_checks(schema: Mapping[str, Any], where: str) -> list[Check]:
    checks: list[Check] = []
    min_items = _as_int(schema, "minItems")
    max_items = _as_int(schema, "maxItems")
    items = schema.get("items")
    if min_items is not None:
        lo = min_items

        def check_min_items(v: list[Any], path: str) -> None:
            if len(v) < lo:
                _fail(path, f"must have at least {lo} items")

        checks.append(check_min_items)
    if max_items is not None:
        hi = max_items

        def check_max_items(v: list[Any], path: str) -> None:
            if len(v) > hi:
                _fail(path, f"must have at most {hi} items")

        checks.append(check_max_items)
    if items is not None:
        if not isinstance(items, Mapping):
            raise SchemaError(f"{where}: items must be a schema (an object)")
        item_check = _compile(items, f"{where}.items")

        def check_items(v: list[Any], path: str) -> None:
            for i, item in enumerate(v):
                item_check(item, f"{path}.{i}" if path else str(i))

        checks.append(check_items)
    return checks


def _type_check(schema: Mapping[str, Any], where: str) -> Check | None:
    t = schema.get("type")
    if t is None:
        return None
    names = [t] if isinstance(t, str) else list(t)
    if not names or any(n not in _TYPES for n in names):
        raise SchemaError(f"{where}: bad type {t!r}")
    preds = tuple(_TYPES[n] for n in names)
    expected = " or ".join(_ARTICLE[n] for n in names)
    if len(preds) == 1:
        pred = preds[0]

        def check_type(v: object, path: str) -> None:
            if not pred(v):
                _fail(path, f"must be {expected}")

        return check_type

    def check_types(v: object, path: str) -> None:
        for p in preds:
            if p(v):
                return
        _fail(path, f"must be {expected}")

    return check_types


def _value_checks(schema: Mapping[str, Any], where: str) -> list[Check]:
    checks: list[Check] = []
    if "enum" in schema:
        options = schema["enum"]
        if not isinstance(options, list | tuple) or not options:
            raise SchemaError(f"{where}: enum must be a non-empty list")
        shown = ", ".join(repr(o) for o in options)
        if all(isinstance(o, str) for o in options):
            allowed = frozenset(options)

            def check_str_enum(v: object, path: str) -> None:
                if not isinstance(v, str) or v not in allowed:
                    _fail(path, f"must be one of {shown}")

            checks.append(check_str_enum)
        else:
            opts = tuple(options)

            def check_enum(v: object, path: str) -> None:
                if not any(_same(v, o) for o in opts):
                    _fail(path, f"must be one of {shown}")

            checks.append(check_enum)
    if "const" in schema:
        const = schema["const"]

        def check_const(v: object, path: str) -> None:
            if not _same(v, const):
                _fail(path, f"must be {const!r}")

        checks.append(check_const)
    return checks


def _run_all(checks: list[Check]) -> Check | None:
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    run = tuple(checks)

    def check_all(v: Any, path: str) -> None:
        for c in run:
            c(v, path)

    return check_all


def _compile(schema: object, where: str = "#") -> Check:
    if not isinstance(schema, Mapping):
        raise SchemaError(f"{where}: a schema must be an object, got {schema!r}")
    unknown = set(schema) - _KEYWORDS - _ANNOTATIONS
    if unknown:
        raise SchemaError(f"{where}: unsupported keywords {sorted(unknown)}")
    type_check = _type_check(schema, where)
    on_str = _run_all(_string_checks(schema))
    on_num = _run_all(_number_checks(schema))
    on_obj = _run_all(_object_checks(schema, where))
    on_arr = _run_all(_array_checks(schema, where))
    on_any = _run_all(_value_checks(schema, where))

    def check(v: Any, path: str) -> None:
        if type_check is not None:
            type_check(v, path)
        if isinstance(v, str):
            if on_str is not None:
                on_str(v, path)
        elif isinstance(v, dict):
            if on_obj is not None:
                on_obj(v, path)
        elif isinstance(v, list | tuple):
            if on_arr is not None:
                on_arr(v, path)
        elif isinstance(v, int | float) and not isinstance(v, bool) and on_num is not None:
            on_num(v, path)
        if on_any is not None:
            on_any(v, path)

    return check


class Validator:
    """A compiled schema: call it with a value (and a path prefix) to validate."""

    __slots__ = ("_check", "schema")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self._check = _compile(schema)

    def __call__(self, value: object, path: str = "") -> None:
        """Raise :class:`InvalidParams` naming the first bad field, or return None."""
        self._check(value, path)


def compile_schema(schema: Mapping[str, Any]) -> Validator:
    """Compile ``schema`` once (raises :class:`SchemaError` if it is malformed)."""
    return Validator(schema)


_CACHE_MAX = 512
# id(schema) -> validator; the validator holds the schema, so the id stays valid.
_cache: dict[int, Validator] = {}


def validate(schema: Mapping[str, Any], value: object, path: str = "") -> None:
    """Validate ``value`` against ``schema``; raise InvalidParams(field=first bad field)."""
    key = id(schema)
    v = _cache.get(key)
    if v is None or v.schema is not schema:
        v = Validator(schema)
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[key] = v
    v(value, path)
