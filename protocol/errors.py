"""Typed JSON-RPC errors of the corral contract (codes and `data.reason`s).

Every error the daemon answers with is an :class:`RpcError`; its subclasses fix
the code and reason so handlers raise meaning, not numbers.
"""

from __future__ import annotations

from typing import Any, ClassVar

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
NO_SESSION = -32001
SESSION_RUNNING = -32002
START_IN_PROGRESS = -32003
PROVIDER_UNAVAILABLE = -32004
NOT_FOUND = -32005
OVERLOADED = -32006
SHUTTING_DOWN = -32007


class RpcError(Exception):
    """An error answer: `code`, human `message` and `data` (always with `reason`)."""

    code: ClassVar[int] = INTERNAL_ERROR
    reason: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None, **data: Any) -> None:
        self.message = message or self.default_message
        self.data: dict[str, Any] = {"reason": self.reason, **data}
        super().__init__(self.message)

    def to_json(self) -> dict[str, Any]:
        """The JSON-RPC `error` member."""
        return {"code": self.code, "message": self.message, "data": self.data}


class ParseError(RpcError):
    code = PARSE_ERROR
    reason = "parse_error"
    default_message = "parse error: the frame is not UTF-8 JSON"


class InvalidRequest(RpcError):
    code = INVALID_REQUEST
    reason = "invalid_request"
    default_message = "invalid request"


class TooLarge(InvalidRequest):
    reason = "too_large"
    default_message = "request too large"


class MethodNotFound(RpcError):
    code = METHOD_NOT_FOUND
    reason = "method_not_found"
    default_message = "method not found"


class InvalidParams(RpcError):
    code = INVALID_PARAMS
    reason = "invalid_params"
    default_message = "invalid params"

    def __init__(self, message: str, field: str | None = None, **data: Any) -> None:
        if field is not None:
            data["field"] = field
        super().__init__(message, **data)

    @property
    def field(self) -> str | None:
        return self.data.get("field")


class InternalError(RpcError):
    code = INTERNAL_ERROR
    reason = "internal_error"
    default_message = "internal error"


class NoSession(RpcError):
    code = NO_SESSION
    reason = "no_session"
    default_message = "the project has no current session"


class SessionRunning(RpcError):
    code = SESSION_RUNNING
    reason = "session_running"
    default_message = "the project's current session is running"


class StartInProgress(RpcError):
    code = START_IN_PROGRESS
    reason = "start_in_progress"
    default_message = "a start for this project is already in flight"


class ProviderUnavailable(RpcError):
    code = PROVIDER_UNAVAILABLE
    reason = "provider_unavailable"
    default_message = "provider unavailable"


class NotFound(RpcError):
    code = NOT_FOUND
    reason = "not_found"
    default_message = "unknown sessionId"


class Overloaded(RpcError):
    code = OVERLOADED
    reason = "overloaded"
    default_message = "overloaded; retry later"


class ShuttingDown(RpcError):
    code = SHUTTING_DOWN
    reason = "shutting_down"
    default_message = "the daemon is stopping"


ALL_ERRORS: tuple[type[RpcError], ...] = (
    ParseError,
    InvalidRequest,
    TooLarge,
    MethodNotFound,
    InvalidParams,
    InternalError,
    NoSession,
    SessionRunning,
    StartInProgress,
    ProviderUnavailable,
    NotFound,
    Overloaded,
    ShuttingDown,
)

_BY_REASON: dict[str, type[RpcError]] = {cls.reason: cls for cls in ALL_ERRORS}


def error_from_json(error: dict[str, Any]) -> RpcError:
    """Rebuild a typed error from a response's `error` member (client side)."""
    data = dict(error.get("data") or {})
    reason = str(data.pop("reason", ""))
    cls = _BY_REASON.get(reason)
    if cls is None:
        exc = RpcError(str(error.get("message", "")), **data)
        exc.data["reason"] = reason or "unknown"
        exc.code = int(error.get("code", INTERNAL_ERROR))  # type: ignore[misc]
        return exc
    if cls is InvalidParams:
        field = data.pop("field", None)
        return InvalidParams(str(error.get("message", "")), field=field, **data)
    return cls(str(error.get("message", "")), **data)
