"""Settings from the environment (EFILE_*, and SCNET_* for sign-in) and, where safe, from command-line flags.

Each setting is declared once, here: its field gives the environment variable (EFILE_ + the name, or
its SCNET_* alias), and a `Flag` marker in its annotation gives the command-line flag, if it has one.
The CLI builds its options, their help and its overrides from `OPTIONS`; error lines name both.

No side effects: reading settings never touches the network or the file system. Every problem
becomes a `ConfigError` with one line naming the setting and the fix, which the CLI prints to stderr.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_core import PydanticUseDefault
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import ConfigError

ENV_PREFIX = "EFILE_"
#: Where third-party SCNet clients sign in and ask the center; override for another deployment.
SCNET_DEFAULT_URL = "https://api.scnet.cn"


_UNFILLED = re.compile(r"\$\{user_config\.[A-Za-z0-9_]*\}")


@dataclass(frozen=True)
class Flag:
    """The command-line flag of a setting. A tuple setting's flag is repeatable; a bool's takes no value."""

    name: str
    metavar: str | None = None


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    base_url: Annotated[str | None, Flag("--base-url", "URL")] = Field(
        default=None, description="efile base URL of the region, with or without /efile."
    )
    token: SecretStr | None = Field(default=None, description="The efile API token (environment only).")
    allowed_roots: Annotated[tuple[str, ...], NoDecode, Flag("--allowed-root", "PATH")] = Field(
        default=(), description="Absolute remote prefixes under which deletion is allowed."
    )
    protected: Annotated[tuple[str, ...], NoDecode, Flag("--protect", "NAME")] = Field(
        default=(), description="Extra protected names, added to the built-in ones."
    )
    max_paths: Annotated[int, Flag("--max-paths", "N")] = Field(
        default=10_000,
        ge=1,
        le=100_000,
        description="Most paths one call may name (a selection may expand to EFILE_MAX_PLAN_PATHS).",
    )
    max_plan_paths: int = Field(
        default=1_000_000,
        ge=1,
        le=10_000_000,
        description="Most paths one plan may hold when a selection expands to them (stored as rows, sent in batches).",
    )
    read_only: Annotated[bool, Flag("--read-only")] = Field(
        default=False, description="Offer no tool that changes anything."
    )
    confirm_ttl: int = Field(
        default=900, ge=5, le=3600, description="Confirmation token lifetime, seconds (time for the person to decide)."
    )
    confirm: Literal["auto", "human", "token"] = Field(
        default="auto",
        description="auto: the person decides where a channel reaches them (form, browser page), else the token "
        "alone; human: the person always decides, refused where nothing reaches them; token: never ask (pipelines).",
    )
    confirm_timeout: float = Field(
        default=120.0,
        gt=0,
        le=600,
        description="Seconds one execution call waits for the person's decision; then it answers that the plan "
        "waits (the token is not spent).",
    )
    review_browser: Literal["auto", "never"] = Field(
        default="auto",
        description="auto: open the review page in the person's browser when the person must decide ($BROWSER "
        "honoured); never: only write its address to stderr.",
    )
    execution_lease: float = Field(
        default=30.0,
        ge=1,
        le=600,
        description="Seconds an execution holds its plan without renewing it: when a replica dies mid-way, the "
        "next execution with the same token resumes it after this long.",
    )
    remove_mode: Literal["quarantine", "delete"] = Field(
        default="quarantine",
        description="What remove_paths does when the dry run names no mode: quarantine (restorable) or delete "
        "(permanent).",
    )
    confirm_secret: SecretStr | None = Field(
        default=None, description="Key for confirmation tokens shared by replicas (default: random per process)."
    )
    audit_log: Annotated[Path | None, Flag("--audit-log", "FILE")] = Field(
        default=None, description="Audit log file (default under the user state dir)."
    )
    http_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="HTTP transport on a non-loopback address: the Host header values to accept."
    )
    # 5: a full 500-id get_task is five task/list requests, answered in one round trip.
    concurrency: int = Field(default=8, ge=1, le=32, description="Concurrent requests for batched calls.")
    request_timeout: float = Field(default=30.0, gt=0, le=300, description="Seconds per HTTP request.")
    retry_attempts: int = Field(default=6, ge=1, le=20, description="Most attempts for one request.")
    retry_budget: float = Field(default=30.0, gt=0, le=300, description="Most seconds spent retrying one request.")
    state_url: str | None = Field(
        default=None,
        description="Where spent tokens and plans live: redis://host:port/db for replicas "
        "(default: SQLite in the user state directory).",
    )
    state_dir: Path | None = Field(
        default=None,
        description="Directory for the SQLite state store and the HTTP token file (default: user state dir).",
    )
    http_token: SecretStr | None = Field(
        default=None,
        description="HTTP transport: the bearer token clients must send, or several separated by commas (each gets "
        "its own share of sessions) (default: random, written to a 0600 file).",
    )
    quarantine_days: int = Field(
        default=7,
        ge=1,  # 0 would make every quarantine purgeable at the next start: no grace at all
        le=3650,
        description="Days a quarantined plan is kept (restorable) before `efile-mcp purge` deletes it for good.",
    )
    links_inside: Literal["refuse", "remove"] = Field(
        default="refuse",
        description="refuse: a folder with symbolic links inside is never deleted for good (quarantine moves it "
        "whole); remove: the storage removes links as links, as rm -rf does, so such folders may be deleted.",
    )
    show_protected: bool = Field(
        default=False,
        description="Name the entries inside protected folders (~/.ssh, ~/.gnupg, …) in list_files, find_paths and "
        "disk_usage; by default they are only counted (count and bytes).",
    )
    walk_max_entries: int = Field(
        default=1_000_000,
        ge=100,
        le=5_000_000,
        description="Most entries one call's tree walk (disk_usage, find, select) reads; the rest resumes.",
    )
    walk_max_seconds: float = Field(
        default=40.0, gt=0, le=600, description="Most seconds one tree walk may take before it answers incomplete."
    )
    log_level: Annotated[LogLevel, Flag("--log-level", "LEVEL")] = Field(
        default="WARNING", description="stderr log level: DEBUG, INFO (start-up facts), WARNING, ERROR or CRITICAL."
    )
    log_format: Annotated[Literal["text", "json"], Flag("--log-format")] = Field(
        default="text",
        description="stderr log format: text, or json (one object a line: time, level, logger, message).",
    )
    transport: Annotated[Literal["stdio", "http"], Flag("--transport")] = Field(
        default="stdio", description="stdio, or http (Streamable HTTP at http://HOST:PORT/mcp, bearer token required)."
    )
    http_host: Annotated[str, Flag("--host", "ADDRESS")] = Field(
        default="127.0.0.1", description="HTTP transport: the address to bind (loopback unless told otherwise)."
    )
    http_port: Annotated[int, Flag("--port", "PORT")] = Field(
        default=8765, ge=1, le=65535, description="HTTP transport: the port; the endpoint is /mcp."
    )
    # Sessions cost memory (0.05-0.1 MB each in the SDK): bounded per replica and per bearer token, reaped when idle.
    http_session_idle_seconds: float = Field(
        default=300.0, gt=0, le=86_400, description="HTTP: seconds a session may stay idle before it is closed."
    )
    http_session_max: int = Field(
        default=300, ge=1, le=100_000, description="HTTP: the most open sessions per replica."
    )
    http_session_max_per_token: int = Field(
        default=100, ge=1, le=100_000, description="HTTP: the most open sessions per bearer token on a replica."
    )
    http_shutdown_seconds: float = Field(
        default=30.0, ge=0, le=3600, description="HTTP: on SIGTERM, the most seconds to let calls in flight finish."
    )

    # Sign-in instead of EFILE_TOKEN. SCNET_* in the environment (no EFILE_ prefix), as SCNet tools name them.
    scnet_user: str | None = Field(default=None, validation_alias="SCNET_USER", description="SCNet user name.")
    scnet_access_key: SecretStr | None = Field(
        default=None, validation_alias="SCNET_ACCESS_KEY", description="Access key (AK) for AK/SK sign-in."
    )
    scnet_secret_key: SecretStr | None = Field(
        default=None, validation_alias="SCNET_SECRET_KEY", description="Secret key (SK) for AK/SK sign-in."
    )
    scnet_password: SecretStr | None = Field(
        default=None, validation_alias="SCNET_PASSWORD", description="Password, for the older password sign-in."
    )
    scnet_org_id: SecretStr | None = Field(
        default=None, validation_alias="SCNET_ORG_ID", description="orgId, for the older password sign-in."
    )
    scnet_region: Annotated[str | None, Flag("--region", "NAME")] = Field(
        default=None, validation_alias="SCNET_REGION", description="Region name or cluster id (default: the only one)."
    )
    scnet_ac_url: str = Field(
        default=SCNET_DEFAULT_URL, validation_alias="SCNET_AC_URL", description="AC service host (center, renewal)."
    )
    scnet_api_url: str = Field(
        default=SCNET_DEFAULT_URL, validation_alias="SCNET_API_URL", description="API host (AK/SK sign-in)."
    )
    scnet_hpc_url: str | None = Field(
        default=None,
        validation_alias="SCNET_HPC_URL",
        description="HPC base URL of the region (quota), with or without /hpc (default: from the SCNet center).",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # A bundle host passes an optional field the person left empty as "" (and some hosts pass the
        # placeholder itself, "${user_config.x}"): either means "not set", for every setting.
        if isinstance(value, str) and (not value.strip() or _UNFILLED.fullmatch(value.strip())):
            raise PydanticUseDefault()
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_name(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", "transport", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("scnet_ac_url", "scnet_api_url", mode="before")
    @classmethod
    def _scnet_url(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return SCNET_DEFAULT_URL
        if isinstance(value, str):
            value = value.strip()
            if not value.startswith(("http://", "https://")):
                raise ValueError("must start with https:// (or http:// for a local sandbox)")
        return value

    @field_validator("allowed_roots", "protected", "http_allowed_hosts", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a local sandbox)")
        return value

    @field_validator("protected")
    @classmethod
    def _plain_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if "/" in name or name in {".", ".."}:
                raise ValueError(f"{name!r} is not a plain file name (no '/', not '.' or '..')")
        return value


@dataclass(frozen=True)
class Option:
    """One setting as a person meets it: its environment variable and, if it has one, its flag."""

    field: str
    env: str
    flag: Flag | None
    description: str
    default: Any
    kind: Literal["value", "switch", "list"]
    choices: tuple[str, ...]

    @property
    def where(self) -> str:
        """How error lines name the setting: `EFILE_MAX_PATHS (or --max-paths)`."""
        return f"{self.env} (or {self.flag.name})" if self.flag else self.env


def _options() -> tuple[Option, ...]:
    hints = typing.get_type_hints(Settings, include_extras=True)
    found = []
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        env = alias if isinstance(alias, str) else ENV_PREFIX + name.upper()
        flag = next((m for m in info.metadata if isinstance(m, Flag)), None)
        hint = hints[name]
        while typing.get_origin(hint) is Annotated:
            hint = typing.get_args(hint)[0]
        kind: Literal["value", "switch", "list"] = "value"
        if hint is bool:
            kind = "switch"
        elif typing.get_origin(hint) is tuple:
            kind = "list"
        choices = tuple(str(c) for c in typing.get_args(hint)) if typing.get_origin(hint) is Literal else ()
        found.append(Option(name, env, flag, info.description or "", info.default, kind, choices))
    return tuple(found)


#: Every setting, in declaration order: what the CLI, its help, error lines and the README table derive from.
OPTIONS: tuple[Option, ...] = _options()
_BY_NAME = {option.field: option for option in OPTIONS} | {option.env.lower(): option for option in OPTIONS}


def option(field: str) -> Option:
    """The option of a field, by field name or environment variable name (any case)."""
    return _BY_NAME[field.lower()]


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with command-line values (not None) taking precedence."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        where = option(field).where if field.lower() in _BY_NAME else "settings"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {where}: {message}") from None
