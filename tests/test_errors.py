"""The one exception tree: every code of the API's table maps to its documented behaviour, and every
class efile-mcp raises on purpose is drawn at the top of errors.py, under its real parent."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from efile_mcp import errors
from efile_mcp.errors import (
    ApiError,
    AuthError,
    EfileMcpError,
    NotFoundError,
    RetryableApiError,
    is_retryable,
    outcome_unknown,
)
from efile_mcp.models.wire import CODE_MEANINGS

PACKAGE = Path(errors.__file__).parent

#: What efile-api.md section 7 says each code calls for.
DOCUMENTED: dict[str, type[ApiError]] = {
    "10008": AuthError,  # token expired: renew or re-acquire once
    "911406": AuthError,  # the token maps to no user: re-acquire once
    "911020": NotFoundError,  # does not exist: "already absent" for a delete
    "911048": RetryableApiError,  # rate limited: back off and retry
    "911404": RetryableApiError,  # AC authentication service unreachable: retry with backoff
    "911504": RetryableApiError,  # command timed out: retry with backoff
}


@pytest.mark.parametrize("code", sorted(set(CODE_MEANINGS) - {"0"}))
def test_every_documented_code_maps_to_its_documented_behaviour(code: str) -> None:
    error = ApiError.from_envelope(code, "what the server said", endpoint="/file/list")
    expected = DOCUMENTED.get(code, ApiError)
    assert type(error) is expected
    assert error.code == code and error.meaning == CODE_MEANINGS[code] and error.endpoint == "/file/list"
    text = str(error)
    assert f"efile API error {code} ({CODE_MEANINGS[code]}) from /file/list: what the server said" in text
    assert is_retryable(error) == (expected is RetryableApiError)
    # Only a command timeout may have acted behind the error; every other code turned the request away.
    assert outcome_unknown(error) == (code == "911504")
    if expected is AuthError:
        assert "EFILE_TOKEN" in text  # the fix is named


def test_the_code_table_covers_the_documented_special_codes_and_success() -> None:
    assert set(DOCUMENTED) <= set(CODE_MEANINGS) and CODE_MEANINGS["0"] == "success"
    assert {c for c, kind in DOCUMENTED.items() if kind is AuthError} == errors.AUTH_CODES
    assert {c for c, kind in DOCUMENTED.items() if kind is RetryableApiError} == errors.RETRYABLE_CODES
    assert errors.NOT_FOUND_CODE == "911020"
    unknown = ApiError.from_envelope("123456", None)
    assert type(unknown) is ApiError and unknown.meaning == "undocumented code" and not is_retryable(unknown)


def _drawn_tree() -> dict[str, str | None]:
    """Each class name of the drawing at the top of errors.py, with the name it is drawn under."""
    lines = (errors.__doc__ or "").splitlines()
    start = lines.index("    EfileMcpError")
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in lines[start:]:
        if not line.strip():
            break  # the drawing ends at the first blank line
        found = re.match(r"^( *[│├└─ ]*)(\(others\)|[A-Z]\w+)", line)
        assert found, f"not a line of the drawing: {line!r}"
        column, name = len(found.group(1)), found.group(2)
        while stack and stack[-1][0] >= column:
            stack.pop()
        if name != "(others)":
            parents[name] = stack[-1][1] if stack else None
        stack.append((column, name))
    return parents


def test_every_class_in_errors_py_is_drawn_under_its_real_parent() -> None:
    drawn = _drawn_tree()
    assert drawn["EfileMcpError"] is None and drawn["ApiError"] == "EfileMcpError"
    defined = {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if cls.__module__ == errors.__name__ and issubclass(cls, BaseException)
    }
    assert set(defined) <= set(drawn), f"not drawn: {sorted(set(defined) - set(drawn))}"
    for name, cls in defined.items():
        if cls is EfileMcpError:
            continue
        assert issubclass(cls, EfileMcpError), name
        assert drawn[name] == cls.__bases__[0].__name__, f"{name} is drawn under {drawn[name]}"
    assert set(drawn) - set(defined) == set(), "the drawing names a class errors.py does not define"


def test_the_guards_refusals_are_the_tree_s_classes() -> None:
    from efile_mcp.guard.requests import GuardRefusal
    from efile_mcp.guard.sealing import ConfirmationRefused

    assert GuardRefusal is errors.GuardRefusal and ConfirmationRefused is errors.ConfirmationRefused
    for cls in (GuardRefusal, ConfirmationRefused):
        refusal = cls("expired", "the token expired: run remove_paths with dry_run=true again.")
        assert isinstance(refusal, EfileMcpError) and refusal.code == "expired"
        assert str(refusal) == "the token expired: run remove_paths with dry_run=true again."


def test_no_public_exception_class_is_defined_outside_errors_py() -> None:
    """The sandbox is the server's double (its errors are answers, not ours); private helpers never escape."""
    outside: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "sandbox" or relative == Path("errors.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = {ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases}
            if bases & {"Exception", "BaseException", "EfileMcpError"} or any(
                b.endswith(("Error", "Refused")) for b in bases
            ):
                outside.append(f"{relative}: {node.name}")
    assert outside == []
