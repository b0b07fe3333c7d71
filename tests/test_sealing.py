"""The confirmation signer alone (guard/sealing.py): a sealed token opens to exactly what was sealed, on this
server, for this API, until it expires; anything altered, foreign or late is refused with a code.

Single use and the path-set comparison are the guard's (the state store and the stored plan): their
tests go through the remove tool in test_confirmation.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Collection
from typing import Any

import pytest

from efile_mcp.guard.sealing import ConfirmationRefused, ConfirmationSigner, Sealed, path_set_digest

from .clocks import ManualClock

EXPIRES = 1_800_000_300.0


def signer(clock: Callable[[], float] | None = None, **kwargs: Any) -> ConfirmationSigner:
    return ConfirmationSigner(secret=b"k" * 32, ttl=300, clock=clock or ManualClock(1_800_000_000.0), **kwargs)


def sealed(s: ConfirmationSigner, paths: Collection[str], plan_id: str = "plan-1", expires_at: float = EXPIRES) -> str:
    return s.seal(plan_id, paths, expires_at)


def refusal(fn: Callable[[], object]) -> str:
    with pytest.raises(ConfirmationRefused) as caught:
        fn()
    return caught.value.code


def test_a_token_opens_to_its_plan_count_digest_and_expiry() -> None:
    s = signer()
    opened = s.unseal(sealed(s, ["/a/x", "/a/y"]))
    assert opened == Sealed(plan_id="plan-1", expires_at=EXPIRES, count=2, digest=path_set_digest(["/a/y", "/a/x"]))
    assert opened.expires_at_iso == "2027-01-15T16:05:00+08:00"


def test_expiry_is_enforced_to_the_second() -> None:
    clock = ManualClock(EXPIRES - 1)
    s = signer(clock)
    token = sealed(s, ["/a/x"])
    assert s.unseal(token).plan_id == "plan-1"
    clock.advance(1)
    with pytest.raises(ConfirmationRefused) as caught:
        s.unseal(token)
    assert caught.value.code == "expired" and "dry_run=true again" in str(caught.value)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t[:-1], id="truncated-mac"),
        pytest.param(lambda t: t[: len(t) // 2], id="truncated-half"),
        pytest.param(lambda t: t + "A", id="extended"),
        pytest.param(lambda t: t.replace("efc1.", "efc2.", 1), id="wrong-prefix"),
        pytest.param(lambda t: t.split(".", 1)[1], id="no-prefix"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "efc1..", id="hollow"),
        pytest.param(lambda t: t.upper(), id="case-changed"),
        pytest.param(lambda t: t[:10] + ("B" if t[10] != "B" else "C") + t[11:], id="payload-bit-flip"),
        pytest.param(lambda t: t[:-3] + ("x" if t[-3] != "x" else "y") + t[-2:], id="mac-bit-flip"),
        pytest.param(lambda t: "efc1.é.ü", id="non-ascii"),
        pytest.param(lambda t: t + "!!!!", id="foreign-characters-appended"),
        pytest.param(lambda t: t + "\n", id="newline-appended"),
        pytest.param(lambda t: " " + t, id="space-prepended"),
        pytest.param(lambda t: t[:-6] + "$$" + t[-6:], id="garbage-inside-mac"),
        pytest.param(lambda t: t[:-1] + chr(ord(t[-1]) ^ 1), id="spare-bits-of-last-character"),
    ],
)
def test_tampered_or_truncated_tokens_are_invalid(mangle: Callable[[str], str]) -> None:
    s = signer()
    token = sealed(s, ["/a/x"])
    assert refusal(lambda: s.unseal(mangle(token))) in {"invalid_token", "missing_token"}
    assert s.unseal(token).plan_id == "plan-1"  # the genuine token still opens afterwards


def test_no_token_says_to_run_a_dry_run_first() -> None:
    with pytest.raises(ConfirmationRefused) as caught:
        signer().unseal(None)
    assert caught.value.code == "missing_token" and "dry_run=true first" in str(caught.value)


def test_a_re_signed_payload_for_more_paths_is_invalid() -> None:
    """Editing the payload (a bigger count, a later expiry) without the key breaks the MAC."""
    s = signer()
    prefix, body, mac = sealed(s, ["/a/x"]).split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["n"] = 2
    payload["e"] += 10_000
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    assert refusal(lambda: s.unseal(f"{prefix}.{forged}.{mac}")) == "invalid_token"


def test_a_token_from_another_process_key_is_invalid() -> None:
    other = ConfirmationSigner(secret=b"z" * 32, ttl=300, clock=ManualClock(1_800_000_000.0))
    assert refusal(lambda: signer().unseal(sealed(other, ["/a/x"]))) == "invalid_token"


def test_a_token_never_crosses_regions_even_with_a_shared_secret() -> None:
    region_a = signer(scope="https://a.example/efile")
    region_b = signer(scope="https://b.example/efile")
    assert refusal(lambda: region_b.unseal(sealed(region_a, ["/a/x"]))) == "wrong_scope"


@pytest.mark.parametrize(
    ("given", "why"),
    [
        (["/a/x", "/a/y", "/a/z"], "superset"),
        (["/a/x"], "subset"),
        (["/a/x", "/a/w"], "same size, other member"),
        ([], "empty"),
        (["/a/x\0/a/y"], "joined into one"),
        (["/a/x/", "/a/y"], "trailing slash"),
    ],
)
def test_the_sealed_digest_matches_only_the_same_path_set(given: list[str], why: str) -> None:
    s = signer()
    opened = s.unseal(sealed(s, ["/a/x", "/a/y"]))
    assert opened.digest == path_set_digest(["/a/y", "/a/x", "/a/x"]), "order and duplicates do not matter"
    # NUL never reaches a plan (the path policy refuses it); were it to, the sealed count tells "/a/x\0/a/y" apart
    assert (opened.digest, opened.count) != (path_set_digest(given), len(set(given))), why


def test_two_plans_seal_to_different_tokens_and_digests() -> None:
    s = signer()
    first = s.unseal(sealed(s, ["/a/x"], plan_id="one"))
    second = s.unseal(sealed(s, ["/a/y"], plan_id="two"))
    assert (first.plan_id, second.plan_id) == ("one", "two")
    assert first.digest != second.digest
