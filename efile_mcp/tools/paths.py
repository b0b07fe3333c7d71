"""Validators shared by the tools' inputs: one rule for what a path argument may look like."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from ..guard.paths import MAX_PATH_BYTES


def absolute_path(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith("/"):
        raise ValueError("path must be absolute (start with '/'); omit it to use the home directory")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("path must not contain control characters")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise ValueError(f"path is longer than {MAX_PATH_BYTES} bytes")
    return value


OptionalDir = Annotated[
    str | None, AfterValidator(absolute_path), Field(description="Absolute folder path; omit for the home directory.")
]
