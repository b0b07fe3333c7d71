"""The load section's floor: a bare `MCPServer` over Streamable HTTP with efile-mcp's two cheapest calls.

`python baseline_http_server.py PORT`, with BASELINE_SANDBOX_URL and BASELINE_SANDBOX_TOKEN in the
environment. `storage_status` answers a small fixed object (efile-mcp's makes no API call either);
`list_files` makes the one `file/list` request to the sandbox and returns the entries. What the
SDK, uvicorn and one httpx request cost per call on this machine, in the same run: no bearer token,
no guard, no policy, no models.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import httpx2 as httpx
import uvicorn
from mcp.server.mcpserver import MCPServer

from efile_mcp.models.wire import FILE_LIST

server = MCPServer("baseline")
_http = httpx.AsyncClient(
    base_url=os.environ.get("BASELINE_SANDBOX_URL", ""),
    headers={"token": os.environ.get("BASELINE_SANDBOX_TOKEN", "")},
    timeout=30,
)


@server.tool()
def storage_status() -> dict[str, Any]:
    """Fixed facts."""
    return {"allowed_roots": ["/public/home/demo"], "read_only": False, "max_paths": 10000, "quota": []}


@server.tool()
async def list_files(path: str, limit: int = 20) -> dict[str, Any]:
    """One listing page, as the API gives it."""
    answer = await _http.get(FILE_LIST, params={"path": path, "start": 0, "limit": limit})
    data = answer.json().get("data") or {}
    return {"path": path, "total": data.get("total", 0), "entries": data.get("fileList", [])[:limit]}


if __name__ == "__main__":
    app = server.streamable_http_app(max_sessions=None)
    uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")).run()
