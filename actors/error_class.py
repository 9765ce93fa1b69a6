"""Error classes: what kind of failure a provider's error is, and whether a retry may help.

:func:`classify` gives every ``agent_error`` notification its ``errorClass``
and ``retryable`` fields. It reads, in this order: the provider's own error
code (Claude Code's ``error`` / ``api_error`` fields, Codex's
``codexErrorInfo``, the ollama provider's ``error_info``), words in the text
that name a class beyond doubt (context length, quota), the HTTP status (given,
or written in the text as ``API Error: 529``, ``status 401``, ``429 Too Many
Requests``), then other words of the text. Pure; no I/O.

==================  =========  ==================================================
class               retryable  examples (from the recorded CLIs)
==================  =========  ==================================================
``rate_limit``      yes        HTTP 429, "Too Many Requests", ``rateLimitExceeded``
``auth``            no         HTTP 401/403, "Invalid API key", ``unauthorized``
``quota``           no         HTTP 402, "credit balance is too low", ``usageLimitExceeded``
``overloaded``      yes        HTTP 5xx and 529, "Overloaded", "high demand"
``network``         yes        "Connection refused", "error sending request",
                               a stream that disconnected
``context_length``  no         "prompt is too long", ``contextWindowExceeded``
``cancelled``       no         "[Request interrupted by user]", a stop
``unknown``         no         anything else
==================  =========  ==================================================
"""

from __future__ import annotations

import re

from corral.protocol.shapes import ERROR_CLASSES

__all__ = ["CLASSES", "RETRYABLE", "classify"]

CLASSES: tuple[str, ...] = ERROR_CLASSES
"""The contract's error classes (defined once, in the protocol's shapes)."""

RETRYABLE: dict[str, bool] = {
    "rate_limit": True,
    "auth": False,
    "quota": False,
    "overloaded": True,
    "network": True,
    "context_length": False,
    "cancelled": False,
    "unknown": False,
}
"""Whether the same request may succeed later, per class."""

PROVIDER_CODES: dict[str, str] = {
    # Claude Code: the synthetic assistant message's ``error``, ``api_retry``'s
    # ``error``, the result's ``api_error``
    "authentication_failed": "auth",
    "billing_error": "quota",
    "rate_limit": "rate_limit",
    "overloaded": "overloaded",
    "server_error": "overloaded",
    "connection_failed": "network",
    # Codex app-server: codexErrorInfo (the string form, or the key of the object form)
    "contextWindowExceeded": "context_length",
    "sessionBudgetExceeded": "quota",
    "usageLimitExceeded": "quota",
    "rateLimitExceeded": "rate_limit",
    "flexUnavailable": "overloaded",
    "serverOverloaded": "overloaded",
    "policyCapacityUnavailable": "overloaded",
    "internalServerError": "overloaded",
    "unauthorized": "auth",
    "httpConnectionFailed": "network",
    "responseStreamConnectionFailed": "network",
    "responseStreamDisconnected": "network",
    "responseTooManyFailedAttempts": "overloaded",
    "modelNotFound": "unknown",
    "cyberPolicy": "unknown",
    "misalignmentPolicyViolation": "unknown",
    "tooManyDenials": "unknown",
    "badRequest": "unknown",
    "threadRollbackFailed": "unknown",
    "sandboxError": "unknown",
    "inferenceHookDenied": "unknown",
    "activeTurnNotSteerable": "unknown",
    # the ollama provider's error_info
    "cancelled": "cancelled",
    "network": "network",
    "model_not_found": "unknown",
    "max_turns": "unknown",
}
"""Provider error codes that decide the class. Codes not listed (Claude's
``unknown``, Codex's ``other``) leave it to the status and the text."""

_DECISIVE_TEXT: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "context_length",
        re.compile(
            r"prompt is too long|context[ _-]?(?:window|length)|maximum context|"
            r"too many tokens|input is too long|ran out of room",
            re.I,
        ),
    ),
    (
        "quota",
        re.compile(
            r"credit balance|insufficient[ _]quota|exceeded your current quota|quota exceeded|"
            r"usage limit|out of credits|billing",
            re.I,
        ),
    ),
)

_STATUS_IN_TEXT = re.compile(
    r"(?:API Error:?|status(?: code)?:?|HTTP(?:/[\d.]+)?|Error code:?)\s*(\d{3})\b"
    r"|\b(\d{3}) (?:Too Many Requests|Unauthorized|Forbidden|Payment Required|"
    r"Internal Server Error|Bad Gateway|Service Unavailable|Gateway Timeout|Overloaded)",
    re.I,
)

_OTHER_TEXT: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("cancelled", re.compile(r"interrupted|aborted by user|\bcancell?ed\b|\babort(?:ed)?\b", re.I)),
    (
        "auth",
        re.compile(
            r"invalid (?:x-)?api[ _-]?key|authentication|unauthori[sz]ed|forbidden|"
            r"please run /login|oauth token|not logged in|invalid bearer",
            re.I,
        ),
    ),
    ("rate_limit", re.compile(r"rate[ _-]?limit|too many requests", re.I)),
    (
        "overloaded",
        re.compile(
            r"overloaded|server[- ]side issue|internal server error|service unavailable|"
            r"bad gateway|high demand|server is busy|server busy",
            re.I,
        ),
    ),
    (
        "network",
        re.compile(
            r"connection (?:refused|failed|reset|closed|error)|econn(?:refused|reset|aborted)|"
            r"etimedout|enotfound|eai_again|error sending request|timed? ?out|network|"
            r"stream disconnected|not reachable|unable to connect|socket hang up|\bdns\b",
            re.I,
        ),
    ),
)


def _status_class(status: int) -> str | None:
    if status == 429:
        return "rate_limit"
    if status in (401, 403, 407):
        return "auth"
    if status == 402:
        return "quota"
    if status == 413:
        return "context_length"
    if status == 408:
        return "network"
    if status == 529 or 500 <= status <= 599:
        return "overloaded"
    return None


def _status_from_text(text: str) -> int | None:
    match = _STATUS_IN_TEXT.search(text)
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


def classify(
    text: str | None, status_code: int | None = None, provider_code: str | None = None
) -> tuple[str, bool]:
    """``(errorClass, retryable)`` of a provider error (see the module table)."""
    text = text or ""
    error_class = PROVIDER_CODES.get(provider_code or "")
    if error_class is None:
        error_class = next((c for c, p in _DECISIVE_TEXT if p.search(text)), None)
    if error_class is None:
        status = status_code if status_code is not None else _status_from_text(text)
        error_class = _status_class(status) if status is not None else None
    if error_class is None:
        error_class = next((c for c, p in _OTHER_TEXT if p.search(text)), "unknown")
    return error_class, RETRYABLE[error_class]
