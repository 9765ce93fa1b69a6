"""Plain coercion of the CLI's simple values, so a client command starts fast.

typer turns each command-line value into its Python type through a pydantic
``TypeAdapter``, built the first time a parameter is parsed; importing pydantic
for that costs more than the rest of ``corral ls`` together. The parameters of
corral's commands are all simple (``str``, ``bool``, ``int``/``float`` with
bounds, ``Path``, lists of them), so :class:`FastCommand` and :class:`FastGroup` give
those a coercion written out here, with the same checks. Anything else (or a
typer whose internals differ) keeps typer's own coercion: the result is the
same, only slower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

from typer.core import TyperCommand, TyperGroup

__all__ = ["FastCommand", "FastGroup"]

_SIMPLE = (str, int, float, Path, bool)
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off", ""})
_runtime_cls: Any = None


def _leaf(annotation: Any) -> type | None:
    if annotation in _SIMPLE:
        return annotation  # type: ignore[no-any-return,unused-ignore]
    if get_origin(annotation) is list:
        args = get_args(annotation)
        if len(args) == 1 and args[0] in _SIMPLE:
            return args[0]  # type: ignore[no-any-return,unused-ignore]
    return None


def _convert(kind: type, value: Any, info: Any) -> Any:
    from typer import BadParameter

    if kind is str:
        return value if isinstance(value, str) else str(value)
    if kind is Path:
        return value if isinstance(value, Path) else Path(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise BadParameter(f"{value!r} is not a valid boolean.")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise BadParameter(f"{value!r} is not a valid {kind.__name__}.") from None
    low, high = info.min, info.max
    if (low is not None and number < low) or (high is not None and number > high):
        if info.clamp:
            return kind(low if low is not None and number < low else high)
        bounds = " and ".join(
            part
            for part in (
                f">= {low}" if low is not None else "",
                f"<= {high}" if high is not None else "",
            )
            if part
        )
        raise BadParameter(f"{value} is not in the range: it must be {bounds}.")
    return number


def _runtime_param_class() -> Any:
    """A subclass of typer's RuntimeParam with plain coercion (None if unavailable)."""
    global _runtime_cls
    if _runtime_cls is None:
        try:
            from typer._coercion import RuntimeParam

            class PlainRuntimeParam(RuntimeParam):  # type: ignore[misc,unused-ignore]
                def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
                    kind = _leaf(self.annotation)
                    assert kind is not None
                    if get_origin(self.annotation) is list:
                        return [_convert(kind, v, self.parameter_info) for v in value]
                    return _convert(kind, value, self.parameter_info)

            _runtime_cls = PlainRuntimeParam
        except (ImportError, AttributeError, TypeError):
            _runtime_cls = False
    return _runtime_cls or None


def install(params: list[Any]) -> None:
    """Give each simple, not yet coerced typer parameter the plain coercion."""
    cls = _runtime_param_class()
    if cls is None:
        return
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", "?") is not None:
            continue
        info = descriptor.parameter_info
        if _leaf(descriptor.annotation) is None or descriptor.file_annotation is not None:
            continue
        if getattr(info, "parser", None) is not None or getattr(info, "click_type", None):
            continue
        try:
            param._runtime_param = cls(parameter_info=info, annotation=descriptor.annotation)
        except TypeError:
            return


class FastCommand(TyperCommand):
    """A typer command whose simple parameters skip pydantic."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        install(self.get_params(ctx))
        return super().parse_args(ctx, args)  # type: ignore[no-any-return,unused-ignore]


class FastGroup(TyperGroup):
    """A typer group whose own simple parameters skip pydantic."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        install(self.get_params(ctx))
        return super().parse_args(ctx, args)  # type: ignore[no-any-return,unused-ignore]
