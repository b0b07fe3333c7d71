"""The efile answer envelope as the sandbox writes it, and the error that becomes one."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from efile_mcp.models.wire import SUCCESS_CODE, Envelope


class ApiError(Exception):
    """An error the sandbox answers as an envelope `{"code": code, "msg": msg, "data": null}`."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg


def answer(code: str, msg: str | None, data: Any = None) -> JSONResponse:
    return JSONResponse(Envelope(code=code, msg=msg, data=data).model_dump(by_alias=True))


def ok(data: Any = None) -> JSONResponse:
    # Built by hand, not through the model: a 5,000-entry listing would otherwise be validated
    # and copied once more just to be serialised. The shape is the one `answer` writes.
    return JSONResponse({"code": SUCCESS_CODE, "msg": "success", "data": data})
