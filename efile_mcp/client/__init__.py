"""The efile API client: transport (auth, envelope, retries) and the non-destructive calls.

The destructive call lives in `efile_mcp.client.removal` and is deliberately not re-exported here:
only the guard imports it.
"""

from .api import EfileApi, TaskLookup, chunked
from .transport import (
    EfileTransport,
    RetryPolicy,
    StaticToken,
    TokenSource,
    normalise_base_url,
)

__all__ = [
    "EfileApi",
    "EfileTransport",
    "RetryPolicy",
    "StaticToken",
    "TaskLookup",
    "TokenSource",
    "chunked",
    "normalise_base_url",
]
