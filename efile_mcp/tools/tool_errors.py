"""Turning our exceptions into MCP tool errors (isError) with the actionable text, never a traceback.

Two kinds: a refusal or failure of ours (`tool_errors`: the exception's own sentence), and arguments the
SDK could not validate before the tool ran (`argument_errors`: one line per argument, naming it and what
to send, instead of pydantic's report with its documentation URL).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ..errors import EfileMcpError, StateStoreError

log = logging.getLogger("efile_mcp.store")

_GOT_CHARS = 60

#: pydantic error type -> what to send instead (formatted with the error's ctx).
_WHAT_TO_SEND: Mapping[str, str] = {
    "missing": "it is required",
    "int_parsing": "send a whole number",
    "int_type": "send a whole number",
    "int_from_float": "send a whole number",
    "float_parsing": "send a number",
    "float_type": "send a number",
    "bool_parsing": "send true or false",
    "bool_type": "send true or false",
    "string_type": "send a string",
    "list_type": "send a list (a JSON array)",
    "model_type": "send an object (a JSON object)",
    "model_attributes_type": "send an object (a JSON object)",
    "dict_type": "send an object (a JSON object)",
    "less_than_equal": "send at most {le}",
    "less_than": "send less than {lt}",
    "greater_than_equal": "send at least {ge}",
    "greater_than": "send more than {gt}",
    "string_too_long": "send at most {max_length} characters",
    "string_too_short": "send at least {min_length} character(s)",
    "too_long": "send at most {max_length} items",
    "too_short": "send at least {min_length} item(s)",
    "literal_error": "send one of {expected}",
    "enum": "send one of {expected}",
    "extra_forbidden": "not a field here: leave it out",
}


#: What an agent reads while the state store cannot be used; where and why go to the server's log (for the operator).
STATE_STORE_UNREACHABLE = "the state store is unreachable; nothing was deleted; retry in a moment"
_store_logged_at = -math.inf


@asynccontextmanager
async def tool_errors() -> AsyncIterator[None]:
    global _store_logged_at
    try:
        yield
    except StateStoreError as exc:  # a redemption that raised it decided nothing, so nothing was sent
        if time.monotonic() - _store_logged_at >= 10:  # an outage under load: a line every 10 s, not one per call
            _store_logged_at = time.monotonic()
            log.warning("tool calls fail: %s", exc)
        raise ToolError(STATE_STORE_UNREACHABLE) from None
    except EfileMcpError as exc:
        raise ToolError(str(exc)) from None


def _where(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "arguments"


def _got(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _GOT_CHARS else text[: _GOT_CHARS - 1] + "…"


def _line(error: ErrorDetails) -> str:
    kind = error["type"]
    template = _WHAT_TO_SEND.get(kind)
    if template is not None:
        try:
            advice = template.format(**error.get("ctx", {}))
        except (KeyError, IndexError):
            advice = error["msg"]
    else:  # our own validators: their sentence, without pydantic's "Value error, " prefix
        advice = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    got = "" if kind in ("missing", "extra_forbidden") else f" (got {_got(error.get('input'))})"
    return f"- {_where(error['loc'])}: {advice}{got}."


def argument_errors(tool: str, exc: ValidationError) -> str:
    """One line per wrong argument, naming it and what to send; nothing was done."""
    errors = exc.errors(include_url=False)
    lines = [f"{tool}: {len(errors)} argument(s) to fix, nothing was done:"]
    lines += [_line(error) for error in errors[:10]]
    if len(errors) > 10:
        lines.append(f"- and {len(errors) - 10} more.")
    return "\n".join(lines)


def unknown_arguments(tool: str, unknown: list[str], known: list[str]) -> str:
    """Arguments the tool does not have: named, with the ones it has; nothing was done."""
    lines = [f"{tool}: {len(unknown)} argument(s) to fix, nothing was done:"]
    lines += [f"- {name}: not an argument of {tool}; it takes {', '.join(known) or 'none'}." for name in unknown[:10]]
    return "\n".join(lines)
