"""stderr logging, one format for every line: efile-mcp's, the SDK's, httpx's and uvicorn's own.

stdout is the MCP channel in stdio mode, so nothing here ever writes to it. Levels: INFO for start-up
facts (what is served where), WARNING only for what a person should act on. `text` is for people,
`json` one object a line (time, level, logger, message) for log collectors.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

TEXT_FORMAT = "efile-mcp %(levelname)s %(name)s: %(message)s"

#: Libraries that log every request at INFO: shown from DEBUG only.
_CHATTY = ("httpx", "httpx2", "httpcore", "httpcore2")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message (and exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configuring again replaces it instead of adding a second one."""


_format: Literal["text", "json"] = "text"


def configure(level: str = "WARNING", fmt: Literal["text", "json"] = "text") -> None:
    """Route every logger to stderr at `level` in `fmt`; call again to change either.

    Installed before the MCP server is built, so the SDK's own `basicConfig` finds a handler and adds none.
    """
    global _format
    _format = fmt
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # uvicorn logs through its own loggers, which propagate here (uvicorn is started with log_config=None).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def fatal(message: str) -> None:
    """The one line a start-up failure gets: `efile-mcp: …` as text, or an ERROR object in json."""
    if _format == "json":
        record = logging.LogRecord("efile_mcp", logging.ERROR, __file__, 0, message, None, None)
        print(JsonFormatter().format(record), file=sys.stderr)
    else:
        print(f"efile-mcp: {message}", file=sys.stderr)
