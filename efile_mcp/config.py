"""Settings from the environment (EFILE_*, and SCNET_* for sign-in) and, where safe, from command-line flags.

No side effects: reading settings never touches the network or the file system. Every problem
becomes a `ConfigError` with one line naming the setting and the fix, which the CLI prints to stderr.
"""

from __future__ import annotations

import re
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


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    base_url: str | None = Field(default=None, description="efile base URL of the region, with or without /efile.")
    token: SecretStr | None = Field(default=None, description="The efile API token (environment only).")
    allowed_roots: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Absolute remote prefixes under which deletion is allowed."
    )
    protected: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Extra protected names, added to the built-in ones."
    )
    max_paths: int = Field(default=10_000, ge=1, le=100_000, description="Most paths one call may name or a selection may expand to.")
    read_only: bool = Field(default=False, description="Offer no tool that changes anything.")
    confirm_ttl: int = Field(default=300, ge=5, le=3600, description="Confirmation token lifetime, seconds.")
    confirm: Literal["auto", "human", "token"] = Field(
        default="auto",
        description="auto: ask the person through the client when it can, else the token alone; "
        "human: refuse execution when the client cannot ask the person; token: never ask (pipelines).",
    )
    confirm_timeout: float = Field(
        default=30.0, gt=0, le=600, description="Seconds to wait for the person's answer before refusing."
    )
    confirm_secret: SecretStr | None = Field(
        default=None, description="Key for confirmation tokens shared by replicas (default: random per process)."
    )
    audit_log: Path | None = Field(default=None, description="Audit log file (default under the user state dir).")
    http_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="HTTP transport on a non-loopback address: the Host header values to accept."
    )
    # 5: a full 500-id get_task is five task/list requests, answered in one round trip.
    concurrency: int = Field(default=5, ge=1, le=32, description="Concurrent requests for batched calls.")
    request_timeout: float = Field(default=30.0, gt=0, le=300, description="Seconds per HTTP request.")
    retry_attempts: int = Field(default=6, ge=1, le=20, description="Most attempts for one request.")
    retry_budget: float = Field(default=30.0, gt=0, le=300, description="Most seconds spent retrying one request.")
    state_url: str | None = Field(
        default=None,
        description="Where spent tokens and plans live: redis://host:port/db for replicas "
        "(default: SQLite in the user state directory).",
    )
    state_dir: Path | None = Field(
        default=None, description="Directory for the SQLite state store and the HTTP token file (default: user state dir)."
    )
    http_token: SecretStr | None = Field(
        default=None,
        description="HTTP transport: the bearer token clients must send (default: random, written to a 0600 file).",
    )
    walk_max_entries: int = Field(
        default=200_000, ge=100, le=5_000_000, description="Most entries one tree walk (disk_usage, find, select) reads."
    )
    walk_max_seconds: float = Field(
        default=40.0, gt=0, le=600, description="Most seconds one tree walk may take before it answers incomplete."
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
    scnet_region: str | None = Field(
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


_FLAG_OF = {
    "base_url": "--base-url",
    "allowed_roots": "--allowed-root",
    "protected": "--protect",
    "max_paths": "--max-paths",
    "read_only": "--read-only",
    "audit_log": "--audit-log",
    "scnet_region": "--region",
}


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with command-line values (not None) taking precedence."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]).lower() if first["loc"] else "settings"
        name = field.upper() if field.startswith("scnet_") else ENV_PREFIX + field.upper()
        flag = _FLAG_OF.get(field)
        where = f"{name} (or {flag})" if flag else name
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {where}: {message}") from None
