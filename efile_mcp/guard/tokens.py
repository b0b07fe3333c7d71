"""Confirmation tokens: sealed, expiring, single-use, bound to one exact set of paths.

A token is `efc1.<payload>.<mac>`, both parts base64url. The payload names a random plan id, the
expiry, the number of paths and a SHA-256 digest of the sorted path set and of the API base URL;
the MAC is HMAC-SHA256 over the payload with a key derived from the server secret. Nothing in the
token is secret, but nothing in it can be changed without the key. Single use is enforced here,
in process memory (see README: with several replicas, share EFILE_CONFIRM_SECRET and route a
session to one replica, or accept that a token may be honoured once per replica).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfirmationRefused as ConfirmationRefused

TOKEN_PREFIX = "efc1"
_KEY_LABEL = b"efile-mcp confirmation token v1"
_REMEMBERED_PLANS = 64
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def path_set_digest(paths: Collection[str]) -> str:
    # Paths never hold NUL (the path policy refuses it), so NUL separates them unambiguously.
    joined = "\0".join(sorted(set(paths))).encode("utf-8", "surrogatepass")
    return hashlib.sha256(joined).hexdigest()


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class IssuedToken:
    token: str
    plan_id: str
    expires_at: float

    @property
    def expires_at_iso(self) -> str:
        return iso_utc(self.expires_at)


@dataclass(frozen=True)
class PlanPreview:
    plan_id: str
    count: int
    total_size: int
    expires_at: float


@dataclass(frozen=True)
class Sealed:
    plan_id: str
    expires_at: float
    count: int
    digest: str

    @property
    def expires_at_iso(self) -> str:
        return iso_utc(self.expires_at)


@dataclass
class ConfirmationSigner:
    secret: bytes
    ttl: float = 300.0
    scope: str = ""  # what else the token is bound to (the API base URL): a token never crosses regions
    clock: Callable[[], float] = time.time
    _used: dict[str, float] = field(default_factory=dict, repr=False)
    _plans: dict[str, tuple[float, frozenset[str]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._key = hmac.new(self.secret, _KEY_LABEL, hashlib.sha256).digest()
        self._scope_digest = hashlib.sha256(self.scope.encode()).hexdigest()[:16]

    @classmethod
    def random(cls, **kwargs: object) -> ConfirmationSigner:
        return cls(secret=secrets.token_bytes(32), **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"ConfirmationSigner(ttl={self.ttl}, secret=<hidden>)"

    def issue(self, paths: Collection[str], *, total_size: int = 0) -> IssuedToken:
        """A token for exactly `paths`. `total_size` rides along (sealed) for the person's confirmation form."""
        plan_id = secrets.token_hex(12)
        expires_at = int(self.clock() + self.ttl)
        token = self.seal(plan_id, paths, expires_at, total_size=total_size)
        self._forget_expired()
        self._plans[plan_id] = (expires_at, frozenset(paths))
        return IssuedToken(token=token, plan_id=plan_id, expires_at=expires_at)

    def redeem(self, token: str | None, paths: Collection[str]) -> str:
        """Check the token against `paths` and mark it used. Returns the plan id. Raises ConfirmationRefused.

        Check and mark happen with no await in between, so two executions racing on one token
        cannot both pass: exactly one proceeds.
        """
        payload = self._check(token, paths)
        plan_id = str(payload["p"])
        self._used[plan_id] = float(payload["e"])
        self._plans.pop(plan_id, None)
        return plan_id

    def preview(self, token: str | None, paths: Collection[str]) -> PlanPreview:
        """What the token confirms, if it would be redeemed for `paths` now; nothing is marked used."""
        payload = self._check(token, paths)
        return PlanPreview(
            plan_id=str(payload["p"]),
            count=int(payload["n"]),
            total_size=int(payload.get("z", 0)),
            expires_at=float(payload["e"]),
        )

    def unseal(self, token: str | None) -> Sealed:
        """What a genuine, unexpired token of this server says; raises ConfirmationRefused otherwise.

        Single use and the path set are the caller's to check (the state store and the stored plan).
        """
        payload = self._open(token)
        now = self.clock()
        if now >= float(payload["e"]):
            raise ConfirmationRefused(
                "expired",
                f"the confirmation token expired {int(now - float(payload['e']))} s ago (tokens live "
                f"{int(self.ttl)} s): run remove_paths with dry_run=true again and confirm with the new token.",
            )
        return Sealed(
            plan_id=str(payload["p"]),
            expires_at=float(payload["e"]),
            count=int(payload["n"]),
            digest=str(payload["d"]),
        )

    def seal(self, plan_id: str, paths: Collection[str], expires_at: float, *, total_size: int = 0) -> str:
        """A token for a plan the caller stores (the guard's plans live in the state store)."""
        payload = {
            "p": plan_id,
            "e": int(expires_at),
            "z": int(total_size),
            "n": len(set(paths)),
            "d": path_set_digest(paths),
            "s": self._scope_digest,
        }
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        mac = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        return f"{TOKEN_PREFIX}.{body}.{mac}"

    def _check(self, token: str | None, paths: Collection[str]) -> dict[str, Any]:
        payload = self._open(token)
        plan_id = str(payload["p"])
        now = self.clock()
        if now >= float(payload["e"]):
            raise ConfirmationRefused(
                "expired",
                f"the confirmation token expired {int(now - float(payload['e']))} s ago (tokens live "
                f"{int(self.ttl)} s): run remove_paths with dry_run=true again and confirm with the new token.",
            )
        if plan_id in self._used:
            raise ConfirmationRefused(
                "reused",
                "this confirmation token was already used: each token confirms one execution. "
                "Run remove_paths with dry_run=true again to preview what is left.",
            )
        given = frozenset(paths)
        if path_set_digest(given) != payload["d"] or len(given) != payload["n"]:
            raise ConfirmationRefused("path_set_mismatch", self._mismatch_message(plan_id, int(payload["n"]), given))
        return payload

    def _open(self, token: str | None) -> dict[str, Any]:
        if not token:
            raise ConfirmationRefused(
                "missing_token",
                "dry_run=false needs the confirmation_token returned by a dry run of exactly these paths: "
                "call remove_paths with dry_run=true first, show the person what would be removed, then "
                "call again with dry_run=false and that confirmation_token.",
            )
        invalid = ConfirmationRefused(
            "invalid_token",
            "the confirmation token is not valid (altered, truncated, or issued by another efile-mcp process): "
            "run remove_paths with dry_run=true again and pass its confirmation_token unchanged.",
        )
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise invalid
        body, mac = parts[1], parts[2]
        # Only the canonical encoding is accepted: base64 decoders skip foreign characters and ignore
        # the spare bits of the last one, and an altered token must not redeem.
        if not (_B64URL.fullmatch(body) and _B64URL.fullmatch(mac)) or _b64(_unb64(mac)) != mac:
            raise invalid
        try:
            expected = hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(mac)):
                raise invalid
            payload = json.loads(_unb64(body))
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raise invalid from None
        if not isinstance(payload, dict) or not {"p", "e", "n", "d", "s"} <= payload.keys():
            raise invalid
        if payload["s"] != self._scope_digest:
            raise ConfirmationRefused(
                "wrong_scope",
                "this confirmation token was issued for another efile region or configuration: "
                "run remove_paths with dry_run=true again here.",
            )
        return payload

    def _mismatch_message(self, plan_id: str, confirmed_count: int, given: frozenset[str]) -> str:
        message = (
            f"the paths differ from the set the dry run confirmed ({confirmed_count} confirmed, {len(given)} given "
            "after removing duplicates and paths inside other given paths)"
        )
        remembered = self._plans.get(plan_id)
        if remembered is not None:
            confirmed = remembered[1]
            extra = sorted(given - confirmed)[:3]
            absent = sorted(confirmed - given)[:3]
            if extra:
                message += f"; not confirmed: {', '.join(map(repr, extra))}"
            if absent:
                message += f"; confirmed but not given: {', '.join(map(repr, absent))}"
        return (
            message + ". Pass exactly the dry run's confirm_paths (its would_remove paths) with its token, "
            "or run a new dry run for the new set. Nothing was deleted."
        )

    def _forget_expired(self) -> None:
        now = self.clock()
        for plan_id in [p for p, exp in self._used.items() if exp <= now]:
            del self._used[plan_id]
        for plan_id in [p for p, (exp, _) in self._plans.items() if exp <= now]:
            del self._plans[plan_id]
        # The remembered sets only improve error messages; a bound keeps a busy server's memory flat.
        while len(self._plans) > _REMEMBERED_PLANS:
            del self._plans[next(iter(self._plans))]
