"""The path arguments of the tools: one rule (`models.results.absolute_path`) for every path a tool takes."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from ..models.results import absolute_path as absolute_path  # the one path rule, for every tool module


def optional_absolute_path(value: str | None) -> str | None:
    return None if value is None else absolute_path(value)


#: A folder argument that defaults to the home directory.
OptionalDir = Annotated[
    str | None, AfterValidator(optional_absolute_path), Field(description="Absolute folder; default: home.")
]
