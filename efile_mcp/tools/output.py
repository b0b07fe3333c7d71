"""Tool answers: structured content, plus the same JSON as text, compact.

The SDK's default text block is the structured content indented by two spaces: for a 10,000-path
removal that is megabytes of white space held in memory and sent to the client. Hosts that read
only text still get every field, as one line of JSON. Absent values are left out, not sent as null.
"""

from __future__ import annotations

import json

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel


def as_result(model: BaseModel) -> CallToolResult:
    structured = model.model_dump(mode="json", exclude_none=True)
    text = json.dumps(structured, ensure_ascii=False, separators=(",", ":"))
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)
