"""Confirmation tokens: sealed, expiring, bound to one exact set of paths and one API base URL.

A token is `efc1.<payload>.<mac>`, both parts base64url. The payload names a random plan id, the
expiry, the number of paths and a SHA-256 digest of the path set (`path_set_digest`: sorted; or, for a
plan kept as rows, `plan_digest`: each run of stored rows' digest in order, so that execution checks a
million-path plan a run at a time, just before sending it, never sorting or holding it) and of the API base URL;
the MAC is HMAC-SHA256 over the payload with a key derived from the server secret. Nothing in the
token is secret, but nothing in it can be changed without the key. The signer only seals and opens:
single use and the path set are checked by the guard against the plan in the state store.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfirmationRefused as ConfirmationRefused
from ..models.times import iso_time

TOKEN_PREFIX = "efc1"
_KEY_LABEL = b"efile-mcp confirmation token v1"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def path_set_digest(paths: Collection[str]) -> str:
    digest = PathSetDigest()
    for path in sorted(set(paths)):
        digest.add(path)
    return digest.hexdigest()


class PathSetDigest:
    """The path set's digest fed one path at a time, in sorted order (a plan's rows read in batches): the same
    value as `path_set_digest` of the whole set, in memory bounded by one path. A repeated path counts once;
    a path out of order is a caller's bug (ValueError), never a silently different digest."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._last: str | None = None

    def add(self, path: str) -> None:
        if self._last is not None:
            if path == self._last:
                return
            if path < self._last:
                raise ValueError("paths must be fed to the digest in sorted order")
            # Paths never hold NUL (the path policy refuses it), so NUL separates them unambiguously.
            self._hash.update(b"\0")
        self._hash.update(path.encode("utf-8", "surrogatepass"))
        self._last = path

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def unit_digest(rows: Sequence[bytes]) -> str:
    """The digest of a run of a plan's stored rows (each row's bytes as stored: its path, type, size, times and
    fingerprint), as written in one store request."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(len(row).to_bytes(4, "big"))
        digest.update(row)
    return digest.hexdigest()


_PLAN_DIGEST = b"efile-mcp plan rows v2\0"


def plan_digest(units: Sequence[Sequence[Any]]) -> str:
    """What a token of a plan kept as rows binds: its runs of rows in stored order, [count, unit_digest] each.
    Prefixed so that it never equals a `path_set_digest`."""
    digest = hashlib.sha256(_PLAN_DIGEST)
    for count, unit in units:
        digest.update(int(count).to_bytes(8, "big"))
        digest.update(bytes.fromhex(str(unit)))
    return digest.hexdigest()


@dataclass(frozen=True)
class Sealed:
    plan_id: str
    expires_at: float
    count: int
    digest: str

    @property
    def expires_at_iso(self) -> str:
        return iso_time(self.expires_at)  # the answers' one time format, +08:00 like every other time


@dataclass
class ConfirmationSigner:
    secret: bytes
    ttl: float = 300.0
    scope: str = ""  # what else the token is bound to (the API base URL): a token never crosses regions
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self._key = hmac.new(self.secret, _KEY_LABEL, hashlib.sha256).digest()
        self._scope_digest = hashlib.sha256(self.scope.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"ConfirmationSigner(ttl={self.ttl}, secret=<hidden>)"

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
        return self.seal_digest(plan_id, path_set_digest(paths), len(set(paths)), expires_at, total_size=total_size)

    def seal_digest(self, plan_id: str, digest: str, count: int, expires_at: float, *, total_size: int = 0) -> str:
        """A token for a plan whose digest the caller computed (the `plan_digest` of its stored rows)."""
        payload = {
            "p": plan_id,
            "e": int(expires_at),
            "z": int(total_size),
            "n": int(count),
            "d": digest,
            "s": self._scope_digest,
        }
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        mac = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        return f"{TOKEN_PREFIX}.{body}.{mac}"

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
