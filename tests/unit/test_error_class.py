"""Tests of actors/error_class.py on the real error texts of the recorded CLIs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from corral.actors.error_class import CLASSES, PROVIDER_CODES, RETRYABLE, classify

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def claude_error(name: str) -> dict[str, Any]:
    """The Claude Code error of a recorded run: its result text, status and error code."""
    lines = [
        json.loads(x) for x in (FIXTURES / "claude" / f"{name}.jsonl").read_text().splitlines()
    ]
    result = next(o for o in lines if o.get("type") == "result")
    synthetic = next(
        (
            o
            for o in lines
            if o.get("type") == "assistant" and o["message"]["model"] == "<synthetic>"
        ),
        {},
    )
    return {
        "text": result.get("result") or "\n".join(result.get("errors") or []),
        "status": result.get("api_error_status"),
        "code": result.get("api_error") or synthetic.get("error"),
    }


def codex_exec_error(name: str) -> str:
    lines = [
        json.loads(x) for x in (FIXTURES / "codex-exec" / f"{name}.jsonl").read_text().splitlines()
    ]
    failed = next(o for o in lines if o.get("type") == "turn.failed")
    return str(failed["error"]["message"])


def codex_app_server_errors(name: str) -> list[tuple[str, Any, bool]]:
    """(message, codexErrorInfo, willRetry) of every ``error`` notification of a recording."""
    out = []
    for line in (FIXTURES / "codex-app-server" / f"{name}.jsonl").read_text().splitlines():
        msg = json.loads(line).get("msg") or {}
        if msg.get("method") == "error":
            error = msg["params"]["error"]
            out.append((error["message"], error["codexErrorInfo"], msg["params"]["willRetry"]))
    return out


def info_key(info: Any) -> str | None:
    if isinstance(info, str):
        return info
    if isinstance(info, dict) and info:
        return str(next(iter(info)))
    return None


# -- one class at a time, on real texts ------------------------------------


def test_rate_limit() -> None:
    text = codex_exec_error("error_429")
    assert "429 Too Many Requests" in text
    assert classify(text) == ("rate_limit", True)
    assert classify("slow down", status_code=429) == ("rate_limit", True)
    assert classify("", provider_code="rateLimitExceeded") == ("rate_limit", True)
    assert classify("", provider_code="rate_limit") == ("rate_limit", True)


def test_auth() -> None:
    claude = claude_error("error_401")
    assert claude["text"] == "Invalid API key · Fix external API key"
    assert claude["status"] == 401 and claude["code"] == "authentication_failed"
    assert classify(claude["text"]) == ("auth", False)
    assert classify(claude["text"], claude["status"], claude["code"]) == ("auth", False)
    codex = codex_exec_error("error_401")
    assert codex.startswith("unexpected status 401 Unauthorized")
    assert classify(codex) == ("auth", False)
    assert classify("", provider_code="unauthorized") == ("auth", False)


def test_quota() -> None:
    # No recorded run ran out of credit; these are the providers' published texts and codes.
    assert classify(
        "Your credit balance is too low to access the Anthropic API. "
        "Please go to Plans & Billing to upgrade or purchase credits.",
        status_code=400,
    ) == ("quota", False)
    assert classify(
        "You exceeded your current quota, please check your plan and billing details.",
        status_code=429,
    ) == ("quota", False)
    assert classify("anything", provider_code="usageLimitExceeded") == ("quota", False)
    assert classify("", provider_code="billing_error") == ("quota", False)
    assert classify("", status_code=402) == ("quota", False)


def test_overloaded() -> None:
    for name, status in (("error_529", 529), ("error_500", 500)):
        claude = claude_error(name)
        assert claude["status"] == status and claude["text"].startswith(f"API Error: {status} ")
        assert classify(claude["text"]) == ("overloaded", True)
    codex = codex_exec_error("error_500")
    assert "high demand" in codex
    assert classify(codex) == ("overloaded", True)
    (_, _, retry), (final, final_info, final_retry) = codex_app_server_errors("error_500")
    assert retry is True and final_retry is False
    assert final_info == "internalServerError"
    assert classify(final, provider_code=info_key(final_info)) == ("overloaded", True)
    assert classify("", status_code=503) == ("overloaded", True)


def test_network() -> None:
    claude = claude_error("connection_refused")
    assert "Connection refused" in claude["text"] and claude["status"] is None
    assert claude["code"] == "connection_failed"
    assert classify(claude["text"]) == ("network", True)
    assert classify(claude["text"], claude["status"], claude["code"]) == ("network", True)
    codex = codex_exec_error("connection_refused")
    assert codex == "Connection failed: error sending request"
    assert classify(codex) == ("network", True)
    # a stream that failed: codexErrorInfo "other", the text decides
    errors = codex_app_server_errors("error_failed_stream")
    final, info, _ = errors[-1]
    assert info == "other"
    assert classify(final, provider_code=info_key(info)) == ("network", True)
    # the retry notice's object form
    _, retry_info, _ = errors[0]
    assert info_key(retry_info) == "responseStreamDisconnected"
    assert classify("Reconnecting... 1/1", provider_code=info_key(retry_info)) == ("network", True)


def test_context_length() -> None:
    # No recorded run overflowed the context; these are the providers' published texts.
    assert classify("prompt is too long: 208310 tokens > 200000 maximum", status_code=400) == (
        "context_length",
        False,
    )
    assert classify(
        "Codex ran out of room in the model's context window. Start a new thread or clear "
        "earlier history before retrying."
    ) == ("context_length", False)
    assert classify("", provider_code="contextWindowExceeded") == ("context_length", False)


def test_cancelled() -> None:
    lines = (FIXTURES / "claude" / "sigint_midstream.jsonl").read_text()
    assert "[Request interrupted by user]" in lines
    assert classify("[Request interrupted by user]") == ("cancelled", False)
    assert classify("interrupted") == ("cancelled", False)  # a Codex turn with status interrupted
    assert classify("interrupted", provider_code="cancelled") == ("cancelled", False)  # ollama


def test_unknown() -> None:
    text = claude_error("max_turns")["text"]
    assert text == "Reached maximum number of turns (1)"
    assert classify(text) == ("unknown", False)
    assert classify(claude_error("resume_unknown")["text"]) == ("unknown", False)
    assert classify(None) == ("unknown", False)
    assert classify("", status_code=400) == ("unknown", False)


# -- rules ------------------------------------------------------------------


def test_port_numbers_are_not_statuses() -> None:
    assert classify("gateway at 127.0.0.1:34290 said no") == ("unknown", False)


def test_provider_code_wins_over_text_and_status() -> None:
    assert classify("Connection refused", status_code=500, provider_code="unauthorized") == (
        "auth",
        False,
    )
    # codes that decide nothing leave it to the status, then the text
    assert classify("x", status_code=429, provider_code="other") == ("rate_limit", True)
    assert classify("Connection refused", provider_code="unknown") == ("network", True)


def test_retryable_is_per_class() -> None:
    assert set(RETRYABLE) == set(CLASSES)
    assert {c for c, r in RETRYABLE.items() if r} == {"rate_limit", "overloaded", "network"}


def test_every_codex_error_info_is_mapped() -> None:
    """Every codexErrorInfo of the recorded app-server schema has a class."""
    schema = json.loads(
        (
            FIXTURES
            / "codex-app-server"
            / "schema"
            / "codex_app_server_protocol.experimental.schemas.json"
        ).read_text()
    )
    variants = schema["definitions"]["v2"]["CodexErrorInfo"]["anyOf"]
    names: set[str] = set()
    for variant in variants:
        names.update(variant.get("enum", []))
        names.update(variant.get("required", []))
    names.discard("other")
    assert names, "no codexErrorInfo values found"
    missing = sorted(n for n in names if n not in PROVIDER_CODES)
    assert missing == []


@pytest.mark.parametrize("code", sorted(PROVIDER_CODES))
def test_provider_codes_give_known_classes(code: str) -> None:
    error_class, retryable = classify("", provider_code=code)
    assert error_class == PROVIDER_CODES[code] and error_class in CLASSES
    assert retryable is RETRYABLE[error_class]
