"""The efile API client: transport (auth, envelope, retries) and the non-destructive calls.

The destructive call lives in `efile_mcp.client.remover` and is deliberately not re-exported here:
only the guard imports it. Moves (`EfileMover`) take nothing away: a moved entry is still on the storage.
"""

from .api import EfileApi, TaskLookup, chunked
from .mover import EfileMover
from .transport import (
    EfileTransport,
    RetryPolicy,
    StaticToken,
    TokenSource,
    normalise_base_url,
)

__all__ = [
    "EfileApi",
    "EfileMover",
    "EfileTransport",
    "RetryPolicy",
    "StaticToken",
    "TaskLookup",
    "TokenSource",
    "chunked",
    "normalise_base_url",
]
