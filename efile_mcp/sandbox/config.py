"""How one sandbox behaves: its directory, account, and the API variants it can imitate."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from efile_mcp.sandbox.ac import AcConfig


@dataclass
class SandboxConfig:
    root: Path
    user: str = "demo"
    token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    #: Simulated round trip added to every request, in seconds.
    delay: float = 0.0
    #: A remove request holding at most this many entries (recursively) runs inline; else it is queued.
    inline_max_entries: int = 200
    #: Seconds the worker sleeps per deleted entry, so tests can watch waiting -> processing -> complete.
    task_step_delay: float = 0.0
    #: Largest `limit` file/list accepts (third parties saw 100,000 return a whole folder).
    list_max_limit: int = 100_000
    #: Return at most this many entries per file/list page, whatever `limit` asks (a server that caps pages).
    list_page_cap: int | None = None
    #: Ignore `start`: every page is the first page, as one third-party client observed.
    list_ignores_start: bool = False
    #: Answer file/list with `children` (every sub-folder, not cut by `limit`), as observed.
    list_children: bool = True
    #: Answer task/list `data` as a bare list instead of `{"fileOperTasks": [...]}`.
    task_list_as_bare_list: bool = False
    #: The quota of the home path, in GB; 0 means "unknown", as the platform reports it.
    quota_threshold_gb: float = 300.0
    #: Refuse the quota call with 10009 (no permission for this call), as some accounts get.
    quota_refused: bool = False
    #: Usage is measured by walking DIR; a measurement is reused for this many seconds.
    quota_cache_seconds: float = 5.0
    #: The clock of the quota cache (tests move it instead of sleeping).
    quota_clock: Callable[[], float] = time.monotonic
    #: The SCNet AC service (sign-in, renewal, center) and the account it knows; see ac.py.
    ac: AcConfig = field(default_factory=AcConfig)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
