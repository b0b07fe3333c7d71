"""The efile answer envelope as the sandbox writes it, and the error that becomes one."""

from __future__ import annotations

from typing import Any

import pydantic_core
from starlette.responses import JSONResponse

from efile_mcp.models.wire import SUCCESS_CODE, Envelope


class ApiError(Exception):
    """An error the sandbox answers as an envelope `{"code": code, "msg": msg, "data": null}`."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg


class FastJSONResponse(JSONResponse):
    """The same compact UTF-8 JSON as Starlette's, written by pydantic's Rust encoder: a 100,000-entry
    listing is mostly serialisation."""

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)


def answer(code: str, msg: str | None, data: Any = None) -> JSONResponse:
    return FastJSONResponse(Envelope(code=code, msg=msg, data=data).model_dump(by_alias=True))


def ok(data: Any = None) -> JSONResponse:
    # Built by hand, not through the model: a 5,000-entry listing would otherwise be validated
    # and copied once more just to be serialised. The shape is the one `answer` writes.
    return FastJSONResponse({"code": SUCCESS_CODE, "msg": "success", "data": data})
