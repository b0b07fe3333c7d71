"""Times as the storage gives them and as every tool answer writes them.

The efile API writes times as `YYYY-MM-DD HH:MM:SS` in the server's local time; SCNet runs on
Asia/Shanghai (UTC+8, no DST). Every tool answer writes them one way: ISO 8601 with the offset,
e.g. `2026-11-20T10:00:00+08:00`, so an agent never has to guess the zone.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import overload

#: Listing and task times are server local time: SCNet runs on Asia/Shanghai (UTC+8, no DST).
SERVER_TZ = timezone(timedelta(hours=8))


def parse_server_time(text: str | None) -> float | None:
    """`YYYY-MM-DD HH:MM:SS` in server local time (or ISO 8601) -> epoch seconds; None when absent or unreadable."""
    if not text:
        return None
    # fromisoformat reads the API's `YYYY-MM-DD HH:MM:SS` too, ~100x faster than strptime (which goes through
    # the locale on every call): a listing parses a time per entry.
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            moment = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=SERVER_TZ)
    return moment.timestamp()


@overload
def iso_time(epoch: float) -> str: ...
@overload
def iso_time(epoch: float | None) -> str | None: ...
def iso_time(epoch: float | None) -> str | None:
    """An epoch as ISO 8601 with the server's offset, e.g. `2026-11-20T10:00:00+08:00`."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, SERVER_TZ).isoformat(timespec="seconds")


def server_time_iso(text: str | None) -> str | None:
    """A time as the API wrote it, in the answers' one format; text that is not a time is kept as it is."""
    epoch = parse_server_time(text)
    return iso_time(epoch) if epoch is not None else (text or None)
