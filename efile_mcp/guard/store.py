"""The state store: which confirmation tokens are spent (or being asked about), and the plans behind them.

Single use must hold across restarts and across replicas, so it cannot live in process memory.

* Default: SQLite at `<state dir>/state.sqlite3` (`sqlite:///abs/path.sqlite3` names another file).
  WAL mode and a busy timeout let several processes on one machine share the file (the stdio
  servers of several Claude Desktop windows); `shared` is False: it is one machine's.
* `redis://[user:password@]host:port/db` or `rediss://`: one Redis for every replica; `shared` is True.

A plan id is *open* until marked; `mark_asked` moves it to *asked* (a person is being asked about
it), `redeem` to *spent* with exactly one winner among all processes sharing the store, `spend`
to *spent* whatever it was. An asked plan redeems only with the person's yes (`person_confirmed`).

Expiry: `expires_at` is epoch seconds from the caller's clock (the token's expiry). A plan is gone
once the clock passes it. A state record is kept `STATE_GRACE` seconds longer, so that a replica
whose clock runs behind still finds a token spent for as long as it could think the token alive.
Redis keys get a relative TTL computed from `expires_at - clock()` on the calling machine, which
keeps them right when the Redis server's clock differs from ours (and with an injected clock).

Every call that cannot reach or use the store raises `StateStoreError` with where and what to check;
a bad URL or an unopenable file is a `ConfigError` at `open_store`.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal, Protocol, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

import anyio.to_thread

from ..errors import ConfigError, StateStoreError

RedeemOutcome = Literal["redeemed", "spent", "asked"]

#: Seconds a state record outlives its token: covers clocks of replicas that differ by up to this much.
STATE_GRACE = 600.0
#: How long a process waits for another one's write lock on the SQLite file.
SQLITE_BUSY_TIMEOUT = 15.0
SQLITE_FILE = "state.sqlite3"
REDIS_PREFIX = "efile-mcp:v1:"
#: Connections one process opens to Redis at most; more calls at once wait for one.
REDIS_MAX_CONNECTIONS = 32
URL_SETTING = "EFILE_STATE_URL"
DIR_SETTING = "EFILE_STATE_DIR"

T = TypeVar("T")


class StateStore(Protocol):
    #: True when several server processes on different machines can share it (Redis); SQLite is per machine.
    shared: bool
    #: Where it is, for a start-up log line (never a password).
    description: str

    async def save_plan(self, plan_id: str, data: bytes, expires_at: float) -> None: ...

    async def load_plan(self, plan_id: str) -> bytes | None:
        """The plan's bytes; None when unknown or expired."""
        ...

    async def mark_asked(self, plan_id: str, expires_at: float) -> bool:
        """The person is being asked: open -> asked (asked stays asked). False when already spent."""
        ...

    async def redeem(self, plan_id: str, expires_at: float, *, person_confirmed: bool) -> RedeemOutcome:
        """Atomically: spent -> "spent"; asked without the person's yes -> "asked" (unchanged); else spent, "redeemed"."""
        ...

    async def spend(self, plan_id: str, expires_at: float) -> None:
        """A no, a timeout or an error: never redeemable again."""
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
CREATE TABLE IF NOT EXISTS states (
    plan_id    TEXT PRIMARY KEY,
    state      TEXT NOT NULL CHECK (state IN ('asked', 'spent')),
    keep_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS states_expiry ON states (keep_until);
"""


class SqliteStore:
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
            self._db = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            try:
                self._setup()
            except BaseException:
                self._db.close()
                raise
        except (OSError, sqlite3.Error) as exc:
            fix = (
                f"set {DIR_SETTING} to a writable directory of this user"
                if setting == DIR_SETTING
                else f"point {URL_SETTING} at a writable sqlite:///absolute/path.sqlite3"
            )
            where = f"{path}" if created_dir is None else f"{path} (in {created_dir})"
            raise ConfigError(f"invalid setting {setting}: cannot open the state file {where}: {exc}; {fix}") from None

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
        self._db.execute("DELETE FROM states WHERE keep_until <= ?", (now,))

    async def _call(self, body: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        return await anyio.to_thread.run_sync(lambda: self._run(body, write=write))

    async def save_plan(self, plan_id: str, data: bytes, expires_at: float) -> None:
        now = self.clock()

        def body(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM plans WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM states WHERE keep_until <= ?", (now,))
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

    @staticmethod
    def _state(db: sqlite3.Connection, plan_id: str, now: float) -> str | None:
        row = db.execute("SELECT state FROM states WHERE plan_id = ? AND keep_until > ?", (plan_id, now)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _set_state(db: sqlite3.Connection, plan_id: str, state: str, keep_until: float, now: float) -> None:
        # An expired record counts as absent: its keep_until is replaced, not extended.
        db.execute(
            "INSERT INTO states (plan_id, state, keep_until) VALUES (?, ?, ?) "
            "ON CONFLICT (plan_id) DO UPDATE SET state = excluded.state, "
            "keep_until = CASE WHEN states.keep_until > ? THEN max(states.keep_until, excluded.keep_until) "
            "ELSE excluded.keep_until END",
            (plan_id, state, keep_until, now),
        )

    async def mark_asked(self, plan_id: str, expires_at: float) -> bool:
        now, keep_until = self.clock(), float(expires_at) + STATE_GRACE

        def body(db: sqlite3.Connection) -> bool:
            state = self._state(db, plan_id, now)
            if state == "spent":
                return False
            self._set_state(db, plan_id, "asked", keep_until, now)
            return True

        return await self._call(body, write=True)

    async def redeem(self, plan_id: str, expires_at: float, *, person_confirmed: bool) -> RedeemOutcome:
        now, keep_until = self.clock(), float(expires_at) + STATE_GRACE

        # BEGIN IMMEDIATE takes the file's write lock before the read: no other process can change
        # the row between this read and the write below, so exactly one redemption wins.
        def body(db: sqlite3.Connection) -> RedeemOutcome:
            state = self._state(db, plan_id, now)
            if state == "spent":
                return "spent"
            if state == "asked" and not person_confirmed:
                return "asked"
            self._set_state(db, plan_id, "spent", keep_until, now)
            return "redeemed"

        return await self._call(body, write=True)

    async def spend(self, plan_id: str, expires_at: float) -> None:
        now, keep_until = self.clock(), float(expires_at) + STATE_GRACE
        await self._call(lambda db: self._set_state(db, plan_id, "spent", keep_until, now), write=True)

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                if not self._closed:
                    self._closed = True
                    self._db.close()

        await anyio.to_thread.run_sync(close)


# ------------------------------------------------------------------------------------------------- Redis

# KEYS[1] the state key; ARGV[1] the record's TTL in ms. A record's TTL only ever grows.
_KEEP_LONGEST = """
local function keep(key, ttl, had)
    if had <= 0 or had < ttl then redis.call('PEXPIRE', key, ttl) else redis.call('PEXPIRE', key, had) end
end
"""

# -> 1 when asked (or already asked), 0 when spent.
_MARK_ASKED = (
    _KEEP_LONGEST
    + """
local state = redis.call('GET', KEYS[1])
if state == 'spent' then return 0 end
local had = redis.call('PTTL', KEYS[1])
if not state then redis.call('SET', KEYS[1], 'asked') end
keep(KEYS[1], tonumber(ARGV[1]), had)
return 1
"""
)

# ARGV[2] '1' when the person said yes. -> 0 spent, 1 asked (unchanged), 2 redeemed (now spent).
_REDEEM = (
    _KEEP_LONGEST
    + """
local state = redis.call('GET', KEYS[1])
if state == 'spent' then return 0 end
if state == 'asked' and ARGV[2] ~= '1' then return 1 end
local had = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[1], 'spent')
keep(KEYS[1], tonumber(ARGV[1]), had)
return 2
"""
)

_SPEND = (
    _KEEP_LONGEST
    + """
local had = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[1], 'spent')
keep(KEYS[1], tonumber(ARGV[1]), had)
return 1
"""
)

_OUTCOMES: dict[int, RedeemOutcome] = {0: "spent", 1: "asked", 2: "redeemed"}
_EXPIRY = struct.Struct(">d")  # a plan's value starts with its expires_at, so load_plan can check it on our clock


class RedisStore:
    """One Redis shared by every replica. Transitions are Lua scripts: each runs alone on the server."""

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
        self._mark_asked = self._redis.register_script(_MARK_ASKED)
        self._redeem = self._redis.register_script(_REDEEM)
        self._spend = self._redis.register_script(_SPEND)

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
        await self._do("save a plan", self._redis.set(self._plan_key(plan_id), value, px=self._ttl_ms(expires_at)))

    async def load_plan(self, plan_id: str) -> bytes | None:
        value = await self._do("load a plan", self._redis.get(self._plan_key(plan_id)))
        if not isinstance(value, bytes) or len(value) < _EXPIRY.size:
            return None
        (expires_at,) = _EXPIRY.unpack_from(value)
        if self.clock() >= expires_at:
            return None
        return value[_EXPIRY.size :]

    async def mark_asked(self, plan_id: str, expires_at: float) -> bool:
        ttl = self._ttl_ms(expires_at, STATE_GRACE)
        done = await self._do("mark a plan as asked", self._mark_asked(keys=[self._state_key(plan_id)], args=[ttl]))
        return int(done) == 1

    async def redeem(self, plan_id: str, expires_at: float, *, person_confirmed: bool) -> RedeemOutcome:
        # If the reply to a script that ran is lost and the client retries, the retry answers "spent":
        # a refusal, never a second execution.
        ttl = self._ttl_ms(expires_at, STATE_GRACE)
        code = await self._do(
            "redeem a confirmation",
            self._redeem(keys=[self._state_key(plan_id)], args=[ttl, "1" if person_confirmed else "0"]),
        )
        return _OUTCOMES[int(code)]

    async def spend(self, plan_id: str, expires_at: float) -> None:
        ttl = self._ttl_ms(expires_at, STATE_GRACE)
        await self._do("mark a confirmation spent", self._spend(keys=[self._state_key(plan_id)], args=[ttl]))

    async def aclose(self) -> None:
        await self._redis.aclose()
