"""The state store: which confirmation tokens are spent (or being asked about), and the plans behind them.

Single use must hold across restarts and across replicas, so it cannot live in process memory.

* Default: SQLite at `<state dir>/state.sqlite3` (`sqlite:///abs/path.sqlite3` names another file).
  WAL mode and a busy timeout let several processes on one machine share the file (the stdio
  servers of several Claude Desktop windows); `shared` is False: it is one machine's.
* `redis://[user:password@]host:port/db` or `rediss://`: one Redis for every replica; `shared` is True.

A plan id goes through one state machine (`PlanState`; no record means *open*):

    open ──mark_asked──> asked ──decide──> approved ──redeem──> running ──finish──> done
      │                    │        └────> declined                │  ^
      └──decide / redeem(token alone)──────────────┘               └──┘ lease expired: redeem resumes it
    spend: -> spent from anything but done (a refusal that must not be retried)

First decision wins. A plan asked in one session (`mark_asked(session=...)`) cannot be asked, answered by
form or executed from another while it waits for the person; an approval from the review page or the
terminal is bound to the plan only. `redeem` makes exactly one winner among all processes sharing the
store and gives it a *lease*: the running execution renews it; a running plan whose lease ran out (its
process died) is redeemed again as "resumed", so an interrupted execution is finished, never burnt.

Expiry: `expires_at` is epoch seconds from the caller's clock (the token's expiry). A plan is gone
once the clock passes it. A state record is kept `STATE_GRACE` seconds longer, so that a replica
whose clock runs behind still finds a token spent for as long as it could think the token alive.
Redis keys get a relative TTL computed from `expires_at - clock()` on the calling machine, which
keeps them right when the Redis server's clock differs from ours (and with an injected clock).

Every call that cannot reach or use the store raises `StateStoreError` with where and what to check;
a bad URL or an unopenable file is a `ConfigError` at `open_store`.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

import anyio.to_thread

from ..errors import ConfigError, StateStoreError
from .ports import Decision

#: Seconds a state record outlives its token: covers clocks of replicas that differ by up to this much.
STATE_GRACE = 600.0
#: How long a process waits for another one's write lock on the SQLite file.
SQLITE_BUSY_TIMEOUT = 15.0
SQLITE_FILE = "state.sqlite3"
#: SQLite's answers for a file that is not, or no longer, a database: set aside, not "choose another directory".
_DAMAGED = ("SQLITE_NOTADB", "SQLITE_CORRUPT")
REDIS_PREFIX = "efile-mcp:v1:"
#: Connections one process opens to Redis at most; more calls at once wait for one.
REDIS_MAX_CONNECTIONS = 32
URL_SETTING = "EFILE_STATE_URL"
DIR_SETTING = "EFILE_STATE_DIR"

T = TypeVar("T")

log = logging.getLogger("efile_mcp.store")


RedeemOutcome = Literal["redeemed", "resumed", "waiting", "other_session", "running", "done", "declined", "spent"]
PlanStatus = Literal["open", "asked", "approved", "declined", "running", "done", "spent"]

#: Seconds an execution holds its plan without renewing: a process that died lets go after this long.
LEASE_SECONDS = 30.0
#: Plan ids of removals have no dash; `find-…` cursors and `run-…` task lists share the plans table.
_NOT_A_REMOVAL = "-"


@dataclass(frozen=True)
class PlanState:
    """Where a plan stands: asked, decided, running (under a lease), done (with its outcome) or spent."""

    status: PlanStatus = "open"
    #: The person's (or a client's) decision, once there is one; a running or done plan keeps it.
    decision: Decision | None = None
    #: The session whose client is asking the person (a form); None when no form was shown.
    asked_by: str | None = None
    #: The session whose client answered the form (a `client_form` decision is bound to it).
    decided_in: str | None = None
    #: The execution holding the plan (running), and until when (epoch seconds, the callers' clock).
    run_id: str | None = None
    lease_until: float = 0.0
    #: Executions started: above 1, an interrupted one was resumed.
    runs: int = 0
    #: For done: the outcome's counts (removed, quarantined, queued, missing, failed, changed...).
    outcome: dict[str, int] | None = None
    #: The review page's address was handed to a client (URL-mode elicitation): an approval on the page may be
    #: that client's own, and is recorded as a client's, not as the person's.
    url_to_client: bool = False

    @property
    def pending(self) -> bool:
        """Nobody decided yet and nothing ran: the person can still approve or decline it."""
        return self.status in ("open", "asked")

    def waits_in_other_session(self, session: str | None) -> bool:
        """A form in another session is asking the person about it (only that session may answer or run it)."""
        return self.status == "asked" and self.asked_by is not None and self.asked_by != session

    def to_json(self) -> str:
        raw: dict[str, Any] = {"s": self.status, "a": self.asked_by, "di": self.decided_in, "r": self.run_id}
        raw |= {"l": self.lease_until, "n": self.runs, "o": self.outcome}
        if self.url_to_client:
            raw["uc"] = True
        if self.decision is not None:
            d = self.decision
            raw["d"] = {"k": d.kind, "c": d.channel, "m": d.mode, "t": d.at}
        return json.dumps(raw, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | None) -> PlanState:
        if text is None:
            return cls()
        if isinstance(text, bytes):
            text = text.decode()
        if text in ("asked", "spent"):  # a record written before the state machine
            return cls(status=text)  # type: ignore[arg-type]
        raw = json.loads(text)
        d = raw.get("d")
        decision = Decision(kind=d["k"], channel=d["c"], mode=d.get("m"), at=float(d.get("t") or 0.0)) if d else None
        return cls(
            status=raw["s"],
            decision=decision,
            asked_by=raw.get("a"),
            decided_in=raw.get("di"),
            run_id=raw.get("r"),
            lease_until=float(raw.get("l") or 0.0),
            runs=int(raw.get("n") or 0),
            outcome=raw.get("o"),
            url_to_client=bool(raw.get("uc")),
        )


@dataclass(frozen=True)
class Redemption:
    """What `redeem` did: `outcome` says why; `state` is the plan's state afterwards (with the run id if won)."""

    outcome: RedeemOutcome
    state: PlanState

    @property
    def won(self) -> bool:
        return self.outcome in ("redeemed", "resumed")


# The transitions, written once for both stores: each takes the current state (and the caller's clock)
# and returns the new state, or None to leave the record as it is. The stores run them atomically.


def _asked(state: PlanState, session: str | None, url_to_client: bool = False) -> PlanState | None:
    if state.status == "open":
        return replace(state, status="asked", asked_by=session, url_to_client=url_to_client)
    if state.status == "asked" and url_to_client and not state.url_to_client:
        return replace(state, url_to_client=True)
    return None  # asked stays asked by whoever asked first (a plan asked without a session stays so)


def _decided(state: PlanState, decision: Decision, session: str | None) -> PlanState | None:
    if not state.pending:
        return None  # first decision wins; nothing decides a running, done or spent plan
    if decision.channel == "client_form" and state.waits_in_other_session(session):
        return None  # another session's form is asking the person: this client cannot answer for them
    status: PlanStatus = "approved" if decision.kind == "approved" else "declined"
    return replace(state, status=status, decision=decision, decided_in=session)


def _redeemed(
    state: PlanState, *, session: str | None, token_alone: bool, run_id: str, lease_until: float, now: float
) -> tuple[RedeemOutcome, PlanState | None]:
    run = replace(state, status="running", run_id=run_id, lease_until=lease_until, runs=state.runs + 1)
    if state.status in ("spent", "declined", "done"):
        return state.status, None
    if state.status == "running":
        if state.lease_until > now:
            return "running", None
        return "resumed", run  # its process died (or stalled past its lease): finish it
    if state.status == "approved":
        bound = state.decision is not None and state.decision.channel == "client_form"
        if bound and state.decided_in is not None and state.decided_in != session:
            return "other_session", None
        return "redeemed", run
    if state.waits_in_other_session(session):
        return "other_session", None
    if state.status == "open" and token_alone:
        return "redeemed", run
    return "waiting", None


def _renewed(state: PlanState, run_id: str, lease_until: float) -> PlanState | None:
    if state.status != "running" or state.run_id != run_id:
        return None
    return replace(state, lease_until=max(state.lease_until, lease_until))


def _finished(state: PlanState, run_id: str, outcome: dict[str, int]) -> PlanState | None:
    if state.status != "running":
        return None
    return replace(state, status="done", outcome=dict(outcome), run_id=run_id, lease_until=0.0)


def _released(state: PlanState, run_id: str) -> PlanState | None:
    """An execution that stopped before sending anything gives the plan back as it was (approved or open)."""
    if state.status != "running" or state.run_id != run_id:
        return None
    back: PlanStatus = "approved" if state.decision is not None else "open"
    return replace(state, status=back, run_id=None, lease_until=0.0, runs=max(0, state.runs - 1))


def _spent(state: PlanState) -> PlanState | None:
    return None if state.status in ("spent", "done") else replace(state, status="spent", lease_until=0.0)


def _is_removal_plan(plan_id: str) -> bool:
    return _NOT_A_REMOVAL not in plan_id


class StateStore(Protocol):
    #: True when several server processes on different machines can share it (Redis); SQLite is per machine.
    shared: bool
    #: Where it is, for a start-up log line (never a password).
    description: str

    async def save_plan(self, plan_id: str, data: bytes, expires_at: float) -> None: ...

    async def load_plan(self, plan_id: str) -> bytes | None:
        """The plan's bytes; None when unknown or expired."""
        ...

    async def drop_plans(self, plan_ids: Sequence[str]) -> None:
        """Forget the values `save_plan` kept under these ids, at once (ids not kept are ignored)."""
        ...

    # A removal plan's paths are rows beside its small header (guard/seen.py): a million-path plan is never
    # one value. Rows expire with the plan; the header is saved last, so a plan without all its rows is unknown.

    async def save_plan_rows(self, plan_id: str, first: int, rows: Sequence[bytes], expires_at: float) -> None:
        """Keep rows `first`, `first + 1`, ... of the plan (row 0 starts it afresh)."""
        ...

    async def load_plan_rows(self, plan_id: str, first: int, count: int) -> list[bytes]:
        """Up to `count` rows from `first`, in order; fewer at the end, none when expired or unknown."""
        ...

    async def plan_state(self, plan_id: str) -> PlanState:
        """Where the plan stands (open when nothing was recorded)."""
        ...

    async def pending(self, now: float) -> list[str]:
        """Ids of removal plans not expired at `now`, not decided, not running, done or spent (oldest first)."""
        ...

    async def mark_asked(
        self, plan_id: str, expires_at: float, session: str | None = None, *, url_to_client: bool = False
    ) -> PlanState:
        """The person is being asked: open -> asked by `session`. Returns the state afterwards (unchanged
        unless it was open): the caller checks `status == "asked"` and `asked_by`. `url_to_client`: the page's
        address went to a client (URL mode), so a page approval may be the client's."""
        ...

    async def decide(
        self, plan_id: str, expires_at: float, decision: Decision, session: str | None = None
    ) -> PlanState:
        """Record the decision if the plan is pending (first decision wins). Returns the state afterwards:
        `decision is` the one given only when it was recorded. A `client_form` decision from another session
        than the asking one is not recorded."""
        ...

    async def redeem(
        self,
        plan_id: str,
        expires_at: float,
        *,
        session: str | None = None,
        token_alone: bool = False,
        lease: float = LEASE_SECONDS,
    ) -> Redemption:
        """Start (or resume) the execution, with exactly one winner: approved, or open when `token_alone`
        -> running under a new run id and a lease of `lease` seconds; running with its lease run out ->
        "resumed". Otherwise the state is unchanged and the outcome says why."""
        ...

    async def renew(self, plan_id: str, expires_at: float, run_id: str, lease: float = LEASE_SECONDS) -> bool:
        """Extend the lease of run `run_id`. False when the plan is no longer that run's."""
        ...

    async def finish(self, plan_id: str, expires_at: float, run_id: str, outcome: dict[str, int]) -> PlanState:
        """running -> done with the outcome's counts."""
        ...

    async def release(self, plan_id: str, expires_at: float, run_id: str) -> PlanState:
        """running -> approved (or open): the run stopped before it sent anything."""
        ...

    async def spend(self, plan_id: str, expires_at: float) -> None:
        """A refusal that must not be retried: never redeemable again (a done plan stays done)."""
        ...

    # -------------------------------------------------------------- resumable walks (client/walk.py, guard/insight.py)
    # A walk that does not finish in one call keeps its state here (frontier and open folders' sums, a JSON
    # document bounded by the tree's shape, not its size) under an id the answer names, until `expires_at`.

    async def save_walk(self, walk_id: str, data: bytes, expires_at: float) -> None:
        """Keep (or replace) a walk's state; expired walks are purged on the way."""
        ...

    async def load_walk(self, walk_id: str) -> bytes | None:
        """The walk's state; None when unknown or expired."""
        ...

    async def drop_walk(self, walk_id: str) -> None:
        """Forget a walk (it finished)."""
        ...

    async def take_walk(self, walk_id: str) -> bytes | None:
        """The walk's state, forgotten in the same step: of two calls taking it, one gets it (the other None)."""
        ...

    async def aclose(self) -> None: ...


def open_store(url: str | None, state_dir: Path | None, *, clock: Callable[[], float] = time.time) -> StateStore:
    """The store `url` (EFILE_STATE_URL) names; None means SQLite in `state_dir` (EFILE_STATE_DIR).

    Raises ConfigError (one line naming the setting and the fix) for a URL it cannot use or a
    SQLite file it cannot open. A Redis store connects lazily: an unreachable Redis shows at the
    first call, as StateStoreError.
    """
    if url is None or not url.strip():
        directory = state_dir if state_dir is not None else _default_state_dir()
        return SqliteStore(directory / SQLITE_FILE, clock=clock, setting=DIR_SETTING, created_dir=directory)
    url = url.strip()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        return SqliteStore(_sqlite_path(url), clock=clock, setting=URL_SETTING)
    if scheme in ("redis", "rediss"):
        return RedisStore(url, clock=clock)
    raise ConfigError(
        f"invalid setting {URL_SETTING}: {_redact(url)!r} is not a state store URL; "
        "use redis://[:password@]host:port/db (or rediss://) for replicas, sqlite:///abs/path.sqlite3, or leave it unset"
    )


def _default_state_dir() -> Path:
    from platformdirs import user_state_path

    return user_state_path("efile-mcp", appauthor=False)


def _sqlite_path(url: str) -> Path:
    parts = urlsplit(url)
    path = Path(unquote(parts.path))
    if parts.netloc or not parts.path.startswith("/") or not path.is_absolute() or parts.query or parts.fragment:
        raise ConfigError(
            f"invalid setting {URL_SETTING}: {url!r} is not sqlite:///absolute/path.sqlite3 "
            "(three slashes, then an absolute file path); fix it or leave the setting unset"
        )
    return path


def _redact(url: str) -> str:
    """`url` with any password replaced, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None and "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{host}" if parts.password is not None else f"{user}@{host}").geturl()


# ------------------------------------------------------------------------------------------------ SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS plans (
    plan_id    TEXT PRIMARY KEY,
    data       BLOB NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS plans_expiry ON plans (expires_at);
CREATE TABLE IF NOT EXISTS plan_states (
    plan_id    TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    keep_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS plan_states_expiry ON plan_states (keep_until);
CREATE TABLE IF NOT EXISTS plan_rows (
    plan_id    TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    row        BLOB NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (plan_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS plan_rows_expiry ON plan_rows (expires_at);
CREATE TABLE IF NOT EXISTS walks (
    walk_id    TEXT PRIMARY KEY,
    data       BLOB NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS walks_expiry ON walks (expires_at);
"""


class _PlanTransitions:
    """The plan's transitions, written once over each store's own atomic `_transition` (SQLite, Redis)."""

    async def _transition(
        self, plan_id: str, expires_at: float, change: Callable[[PlanState, float], PlanState | None], what: str
    ) -> tuple[PlanState, PlanState]:
        raise NotImplementedError

    async def mark_asked(
        self, plan_id: str, expires_at: float, session: str | None = None, *, url_to_client: bool = False
    ) -> PlanState:
        _, after = await self._transition(
            plan_id, expires_at, lambda state, _: _asked(state, session, url_to_client), "mark a plan as asked"
        )
        return after

    async def decide(
        self, plan_id: str, expires_at: float, decision: Decision, session: str | None = None
    ) -> PlanState:
        _, after = await self._transition(
            plan_id, expires_at, lambda state, _: _decided(state, decision, session), "record a decision"
        )
        return after

    async def redeem(
        self,
        plan_id: str,
        expires_at: float,
        *,
        session: str | None = None,
        token_alone: bool = False,
        lease: float = LEASE_SECONDS,
    ) -> Redemption:
        # If the reply to a transaction that ran is lost and the client retries, the retry finds the plan
        # running under another run id: a refusal, never a second execution.
        run_id = uuid.uuid4().hex
        outcome: list[RedeemOutcome] = []

        def change(state: PlanState, now: float) -> PlanState | None:
            won, after = _redeemed(
                state, session=session, token_alone=token_alone, run_id=run_id, lease_until=now + lease, now=now
            )
            outcome.append(won)
            return after

        _, after = await self._transition(plan_id, expires_at, change, "redeem a confirmation")
        return Redemption(outcome[-1], after)

    async def renew(self, plan_id: str, expires_at: float, run_id: str, lease: float = LEASE_SECONDS) -> bool:
        _, after = await self._transition(
            plan_id, expires_at, lambda state, now: _renewed(state, run_id, now + lease), "renew an execution's lease"
        )
        return after.status == "running" and after.run_id == run_id

    async def finish(self, plan_id: str, expires_at: float, run_id: str, outcome: dict[str, int]) -> PlanState:
        _, after = await self._transition(
            plan_id, expires_at, lambda state, _: _finished(state, run_id, outcome), "record an execution's end"
        )
        return after

    async def release(self, plan_id: str, expires_at: float, run_id: str) -> PlanState:
        _, after = await self._transition(
            plan_id, expires_at, lambda state, _: _released(state, run_id), "release an execution"
        )
        return after

    async def spend(self, plan_id: str, expires_at: float) -> None:
        await self._transition(plan_id, expires_at, lambda state, _: _spent(state), "mark a confirmation spent")

    # -------------------------------------------------------------- resumable walks (H4; see StateStore)


class SqliteStore(_PlanTransitions):
    """One SQLite file shared by the processes of one machine. Blocking calls run in a worker thread."""

    shared = False

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        setting: str = DIR_SETTING,
        created_dir: Path | None = None,
    ) -> None:
        self.path = path
        self.clock = clock
        self.description = f"SQLite at {path} (this machine's processes only)"
        self._lock = threading.Lock()
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            try:
                if hasattr(os, "fchmod") and os.fstat(fd).st_mode & 0o077:
                    os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
            try:
                self._connect()
            except sqlite3.DatabaseError as exc:
                if getattr(exc, "sqlite_errorname", "") not in _DAMAGED:
                    raise
                self._set_damaged_file_aside(exc)
                self._connect()
        except (OSError, sqlite3.Error) as exc:
            fix = (
                f"set {DIR_SETTING} to a writable directory of this user"
                if setting == DIR_SETTING
                else f"point {URL_SETTING} at a writable sqlite:///absolute/path.sqlite3"
            )
            where = f"{path}" if created_dir is None else f"{path} (in {created_dir})"
            raise ConfigError(f"invalid setting {setting}: cannot open the state file {where}: {exc}; {fix}") from None

    def _connect(self) -> None:
        # Two processes opening a new file at the same moment (two client windows starting) race for the switch
        # to WAL, which SQLite may answer "database is locked" at once instead of waiting out the busy timeout:
        # try again, within that timeout.
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
        pause = 0.01
        while True:
            self._db = sqlite3.connect(
                self.path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            try:
                self._setup()
                return
            except sqlite3.OperationalError as exc:
                self._db.close()
                busy = getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in str(exc)
                if not busy or time.monotonic() >= deadline:
                    raise
            except BaseException:
                self._db.close()
                raise
            time.sleep(pause)  # start-up only, before the server serves
            pause = min(pause * 2, 0.2)

    def _set_damaged_file_aside(self, exc: sqlite3.DatabaseError) -> None:
        """A damaged file (not a database, malformed) is kept under a new name and a new one started.

        Setting EFILE_STATE_DIR elsewhere would not repair anything. Its plans are gone with it, so every
        confirmation token issued before now is refused ("no longer known"): nothing it confirmed can run twice.
        """
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        kept = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            part = self.path.with_name(self.path.name + suffix)
            if part.exists():
                os.replace(part, kept.with_name(kept.name + suffix))
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600))
        log.warning(
            "the state file %s was damaged (%s): moved it to %s (kept, not read again) and started a new one; "
            "confirmation tokens issued before now are refused, so run the dry runs again",
            self.path,
            exc,
            kept,
        )

    def _setup(self) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}")
        # WAL: readers never block the writer, and processes on one machine share the file safely.
        # Switching needs a moment alone with the file; another process doing the same waits via the busy timeout.
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise sqlite3.OperationalError(f"the file system does not support WAL mode (got {mode!r})")
        # FULL: a spent mark survives a power cut, not only a crash (a token must not come back after a reboot).
        db.execute("PRAGMA synchronous = FULL")
        db.execute("BEGIN IMMEDIATE")  # (not executescript: it would COMMIT on its own)
        try:
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                db.execute(statement)
            # A file of an earlier version keeps its spent and asked marks ('asked' / 'spent' read as states).
            if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'states'").fetchone():
                db.execute("INSERT OR IGNORE INTO plan_states SELECT plan_id, state, keep_until FROM states")
                db.execute("DROP TABLE states")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._purge_now()

    # The blocking side: each method runs whole in one worker thread, holding the connection's lock.

    def _run(self, body: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        with self._lock:
            if self._closed:
                raise StateStoreError(f"the state store ({self.description}) is closed: restart efile-mcp")
            db = self._db
            try:
                if not write:
                    return body(db)
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = body(db)
                    db.execute("COMMIT")
                    return result
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StateStoreError(
                    f"the state file {self.path} failed: {exc}. If it is locked, another efile-mcp process "
                    f"is holding it for over {int(SQLITE_BUSY_TIMEOUT)} s; if the disk is full or the file "
                    f"is damaged, free space or move the file away (this forgets pending confirmations) and retry."
                ) from exc

    def _purge_now(self) -> None:
        now = self.clock()
        self._db.execute("DELETE FROM plans WHERE expires_at <= ?", (now,))
        self._db.execute("DELETE FROM plan_states WHERE keep_until <= ?", (now,))
        self._db.execute("DELETE FROM plan_rows WHERE expires_at <= ?", (now,))

    async def _call(self, body: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        return await anyio.to_thread.run_sync(lambda: self._run(body, write=write))

    async def save_plan(self, plan_id: str, data: bytes, expires_at: float) -> None:
        now = self.clock()

        def body(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM plans WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM plan_states WHERE keep_until <= ?", (now,))
            db.execute(
                "INSERT INTO plans (plan_id, data, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (plan_id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
                (plan_id, data, float(expires_at)),
            )

        await self._call(body, write=True)

    async def load_plan(self, plan_id: str) -> bytes | None:
        now = self.clock()

        def body(db: sqlite3.Connection) -> bytes | None:
            row = db.execute("SELECT data FROM plans WHERE plan_id = ? AND expires_at > ?", (plan_id, now)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._call(body, write=False)

    async def drop_plans(self, plan_ids: Sequence[str]) -> None:
        ids = list(plan_ids)
        if not ids:
            return

        def body(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM plans WHERE plan_id = ?", ((plan_id,) for plan_id in ids))

        await self._call(body, write=True)

    async def save_plan_rows(self, plan_id: str, first: int, rows: Sequence[bytes], expires_at: float) -> None:
        now = self.clock()

        def body(db: sqlite3.Connection) -> None:
            if first == 0:
                db.execute("DELETE FROM plan_rows WHERE expires_at <= ? OR plan_id = ?", (now, plan_id))
            db.executemany(
                "INSERT OR REPLACE INTO plan_rows (plan_id, seq, row, expires_at) VALUES (?, ?, ?, ?)",
                ((plan_id, first + i, row, float(expires_at)) for i, row in enumerate(rows)),
            )

        await self._call(body, write=True)

    async def load_plan_rows(self, plan_id: str, first: int, count: int) -> list[bytes]:
        now = self.clock()

        def body(db: sqlite3.Connection) -> list[bytes]:
            found = db.execute(
                "SELECT row FROM plan_rows WHERE plan_id = ? AND seq >= ? AND seq < ? AND expires_at > ? ORDER BY seq",
                (plan_id, first, first + count, now),
            ).fetchall()
            return [bytes(row) for (row,) in found]

        return await self._call(body, write=False)

    @staticmethod
    def _state(db: sqlite3.Connection, plan_id: str, now: float) -> PlanState:
        row = db.execute(
            "SELECT state FROM plan_states WHERE plan_id = ? AND keep_until > ?", (plan_id, now)
        ).fetchone()
        return PlanState.from_json(None if row is None else str(row[0]))

    async def _transition(
        self,
        plan_id: str,
        expires_at: float,
        change: Callable[[PlanState, float], PlanState | None],
        what: str = "change a plan's state",
    ) -> tuple[PlanState, PlanState]:
        """Run `change` on the plan's state atomically: (before, after)."""
        now, keep_until = self.clock(), float(expires_at) + STATE_GRACE

        # BEGIN IMMEDIATE takes the file's write lock before the read: no other process can change
        # the row between this read and the write below, so every transition has exactly one winner.
        def body(db: sqlite3.Connection) -> tuple[PlanState, PlanState]:
            before = self._state(db, plan_id, now)
            after = change(before, now)
            if after is None:
                return before, before
            # An expired record counts as absent: its keep_until is replaced, not extended.
            db.execute(
                "INSERT INTO plan_states (plan_id, state, keep_until) VALUES (?, ?, ?) "
                "ON CONFLICT (plan_id) DO UPDATE SET state = excluded.state, "
                "keep_until = CASE WHEN plan_states.keep_until > ? "
                "THEN max(plan_states.keep_until, excluded.keep_until) ELSE excluded.keep_until END",
                (plan_id, after.to_json(), keep_until, now),
            )
            return before, after

        return await self._call(body, write=True)

    async def plan_state(self, plan_id: str) -> PlanState:
        now = self.clock()
        return await self._call(lambda db: self._state(db, plan_id, now), write=False)

    async def pending(self, now: float) -> list[str]:
        def body(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT p.plan_id, s.state FROM plans p LEFT JOIN plan_states s "
                "ON s.plan_id = p.plan_id AND s.keep_until > ? WHERE p.expires_at > ? "
                "AND instr(p.plan_id, '-') = 0 ORDER BY p.expires_at, p.plan_id",
                (now, now),
            ).fetchall()
            return [str(pid) for pid, state in rows if PlanState.from_json(state).pending]

        return await self._call(body, write=False)

    # -------------------------------------------------------------- resumable walks (H4; see StateStore)

    async def save_walk(self, walk_id: str, data: bytes, expires_at: float) -> None:
        now = self.clock()

        def body(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM walks WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT INTO walks (walk_id, data, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (walk_id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
                (walk_id, data, float(expires_at)),
            )

        await self._call(body, write=True)

    async def load_walk(self, walk_id: str) -> bytes | None:
        now = self.clock()

        def body(db: sqlite3.Connection) -> bytes | None:
            row = db.execute("SELECT data FROM walks WHERE walk_id = ? AND expires_at > ?", (walk_id, now)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._call(body, write=True)

    async def drop_walk(self, walk_id: str) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM walks WHERE walk_id = ?", (walk_id,))

        await self._call(body, write=True)

    async def take_walk(self, walk_id: str) -> bytes | None:
        now = self.clock()

        def body(db: sqlite3.Connection) -> bytes | None:
            # One write transaction (see _run): a second taker waits for it, then finds nothing.
            row = db.execute("SELECT data FROM walks WHERE walk_id = ? AND expires_at > ?", (walk_id, now)).fetchone()
            db.execute("DELETE FROM walks WHERE walk_id = ?", (walk_id,))
            return None if row is None else bytes(row[0])

        return await self._call(body, write=True)

    # -------------------------------------------------------------- end of resumable walks

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                if not self._closed:
                    self._closed = True
                    self._db.close()

        await anyio.to_thread.run_sync(close)


# ------------------------------------------------------------------------------------------------- Redis

_EXPIRY = struct.Struct(">d")  # a plan's value starts with its expires_at, so load_plan can check it on our clock


class RedisStore(_PlanTransitions):
    """One Redis shared by every replica. A transition is an optimistic transaction (WATCH the state key, read,
    MULTI/EXEC the new state): when another process changed the key in between, EXEC fails and it runs again on
    what is there now, so each transition is atomic and a redemption has exactly one winner."""

    shared = True

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time, prefix: str = REDIS_PREFIX) -> None:
        parts = self._check_url(url)
        self.clock = clock
        self.prefix = prefix
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 6379
        db = parts.path.strip("/") or "0"
        user = f"{parts.username}@" if parts.username else ""
        secret = " (with a password)" if parts.password else ""
        self.description = f"Redis at {parts.scheme}://{user}{self._where}/{db}{secret}, shared by replicas"
        import redis.asyncio

        try:
            # A bounded pool that waits for a free connection: a burst of calls queues instead of failing.
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                url,
                max_connections=REDIS_MAX_CONNECTIONS,
                timeout=20.0,
                socket_connect_timeout=5.0,
                socket_timeout=10.0,
                decode_responses=False,
            )
            self._redis: redis.asyncio.Redis = redis.asyncio.Redis.from_pool(pool)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid setting {URL_SETTING}: {_redact(url)!r}: {exc}; fix the URL") from None

    @property
    def _where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @staticmethod
    def _check_url(url: str) -> SplitResult:
        def bad(why: str) -> ConfigError:
            return ConfigError(
                f"invalid setting {URL_SETTING}: {_redact(url)!r} {why}; "
                "use redis://[:password@]host:port/db (or rediss:// for TLS)"
            )

        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise bad(f"is not a usable Redis URL ({exc})") from None
        if not parts.hostname:
            raise bad("names no host")
        if port is not None and not 0 < port < 65536:
            raise bad(f"has port {port}, outside 1-65535")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise bad(f"has database {db!r}, not a number")
        return parts

    def _plan_key(self, plan_id: str) -> str:
        return f"{self.prefix}plan:{plan_id}"

    def _state_key(self, plan_id: str) -> str:
        return f"{self.prefix}state:{plan_id}"

    def _index_key(self) -> str:
        """A sorted set of removal plan ids scored by expiry: what `pending` reads."""
        return f"{self.prefix}plans"

    def _ttl_ms(self, expires_at: float, grace: float = 0.0) -> int:
        """Relative TTL from our clock: right however the Redis server's clock is set. At least 1 ms."""
        return max(1, int((float(expires_at) + grace - self.clock()) * 1000))

    async def _do(self, what: str, call: Awaitable[T]) -> T:
        import redis.exceptions

        try:
            return await call
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            if isinstance(exc, redis.exceptions.AuthenticationError):
                raise StateStoreError(
                    f"Redis at {self._where} refused the credentials while trying to {what}: "
                    f"check the user and password in {URL_SETTING}."
                ) from exc
            raise StateStoreError(
                f"Redis at {self._where} is unreachable ({type(exc).__name__}: {exc}) while trying to {what}: "
                f"check that redis-server is running there and that this machine can reach it (firewall, "
                f"TLS: rediss://), and that {URL_SETTING} names the right host, port, password and database. "
                f"Nothing was confirmed; retry once Redis is back."
            ) from exc
        except redis.exceptions.RedisError as exc:
            raise StateStoreError(
                f"Redis at {self._where} failed to {what}: {type(exc).__name__}: {exc}. Check that it is a "
                f"writable primary (not a read-only replica), has memory left (maxmemory), and that the "
                f"user in {URL_SETTING} may run GET/SET/PEXPIRE/EVALSHA on keys {self.prefix}*."
            ) from exc

    async def save_plan(self, plan_id: str, data: bytes, expires_at: float) -> None:
        value = _EXPIRY.pack(float(expires_at)) + data
        if not _is_removal_plan(plan_id):
            await self._do("save a plan", self._redis.set(self._plan_key(plan_id), value, px=self._ttl_ms(expires_at)))
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(self._plan_key(plan_id), value, px=self._ttl_ms(expires_at))
        pipe.zadd(self._index_key(), {plan_id: float(expires_at)})
        pipe.zremrangebyscore(self._index_key(), "-inf", self.clock())
        await self._do("save a plan", pipe.execute())

    async def load_plan(self, plan_id: str) -> bytes | None:
        value = await self._do("load a plan", self._redis.get(self._plan_key(plan_id)))
        if not isinstance(value, bytes) or len(value) < _EXPIRY.size:
            return None
        (expires_at,) = _EXPIRY.unpack_from(value)
        if self.clock() >= expires_at:
            return None
        return value[_EXPIRY.size :]

    async def drop_plans(self, plan_ids: Sequence[str]) -> None:
        ids = list(plan_ids)
        if not ids:
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(*[self._plan_key(plan_id) for plan_id in ids])
        removals = [plan_id for plan_id in ids if _is_removal_plan(plan_id)]
        if removals:
            pipe.zrem(self._index_key(), *removals)
        await self._do("forget plans", pipe.execute())

    def _rows_key(self, plan_id: str) -> str:
        return f"{self.prefix}rows:{plan_id}"

    async def save_plan_rows(self, plan_id: str, first: int, rows: Sequence[bytes], expires_at: float) -> None:
        key = self._rows_key(plan_id)
        pipe = self._redis.pipeline(transaction=True)
        if first == 0:
            pipe.delete(key)
        else:
            pipe.ltrim(key, 0, first - 1)  # a retried chunk replaces itself
        if rows:
            pipe.rpush(key, *rows)
        pipe.pexpire(key, self._ttl_ms(expires_at))
        await self._do("save a plan's rows", pipe.execute())

    async def load_plan_rows(self, plan_id: str, first: int, count: int) -> list[bytes]:
        if count <= 0:
            return []
        found = await self._do(
            "load a plan's rows", self._redis.lrange(self._rows_key(plan_id), first, first + count - 1)
        )
        return [row if isinstance(row, bytes) else str(row).encode() for row in found]

    async def _transition(
        self, plan_id: str, expires_at: float, change: Callable[[PlanState, float], PlanState | None], what: str
    ) -> tuple[PlanState, PlanState]:
        import redis.exceptions

        key = self._state_key(plan_id)

        async def attempt() -> tuple[PlanState, PlanState]:
            async with self._redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(key)
                        raw = await pipe.get(key)
                        had = int(await pipe.pttl(key))
                        before = PlanState.from_json(raw)
                        after = change(before, self.clock())
                        if after is None:
                            await pipe.unwatch()  # type: ignore[no-untyped-call]
                            return before, before
                        # A record's TTL only ever grows: a shorter expiry given later never shortens it.
                        ttl = max(self._ttl_ms(expires_at, STATE_GRACE), had)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.set(key, after.to_json(), px=ttl)
                        await pipe.execute()
                        return before, after
                    except redis.exceptions.WatchError:
                        continue  # another process changed it first: decide again on what is there now

        return await self._do(what, attempt())

    async def plan_state(self, plan_id: str) -> PlanState:
        raw = await self._do("read a plan's state", self._redis.get(self._state_key(plan_id)))
        return PlanState.from_json(raw)

    async def pending(self, now: float) -> list[str]:
        index = self._index_key()
        ids = await self._do("list pending plans", self._redis.zrangebyscore(index, f"({now}", "+inf"))
        plan_ids = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
        if not plan_ids:
            return []
        states = await self._do("list pending plans", self._redis.mget([self._state_key(i) for i in plan_ids]))
        return [pid for pid, raw in zip(plan_ids, states, strict=True) if PlanState.from_json(raw).pending]

    def _walk_key(self, walk_id: str) -> str:
        return f"{self.prefix}walk:{walk_id}"

    async def save_walk(self, walk_id: str, data: bytes, expires_at: float) -> None:
        value = _EXPIRY.pack(float(expires_at)) + data
        await self._do("save a walk", self._redis.set(self._walk_key(walk_id), value, px=self._ttl_ms(expires_at)))

    async def load_walk(self, walk_id: str) -> bytes | None:
        value = await self._do("load a walk", self._redis.get(self._walk_key(walk_id)))
        if not isinstance(value, bytes) or len(value) < _EXPIRY.size:
            return None
        (expires_at,) = _EXPIRY.unpack_from(value)
        if self.clock() >= expires_at:
            return None
        return value[_EXPIRY.size :]

    async def drop_walk(self, walk_id: str) -> None:
        await self._do("forget a walk", self._redis.delete(self._walk_key(walk_id)))

    async def take_walk(self, walk_id: str) -> bytes | None:
        value = await self._do("take a walk", self._redis.getdel(self._walk_key(walk_id)))
        if not isinstance(value, bytes) or len(value) < _EXPIRY.size:
            return None
        (expires_at,) = _EXPIRY.unpack_from(value)
        return None if self.clock() >= expires_at else value[_EXPIRY.size :]

    # -------------------------------------------------------------- end of resumable walks

    async def aclose(self) -> None:
        await self._redis.aclose()
