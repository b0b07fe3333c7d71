"""Fault injection for the sandbox: what a WAN, a gateway and a busy efile service do to a client.

A `FaultPlan` is a list of rules; each rule names a fault, the endpoint it hits, how often (a share
of calls, a burst, after letting some calls through) and, for some, how long. It is set per test
(`sandbox.faults = FaultPlan([...])`) or from the command line
(`python -m efile_mcp.sandbox.serve --fault rate_limit@async-remove:rate=0.3 --fault http_429:burst=2:seconds=1`).

Faults before the handler leave the server untouched (the client may safely retry); faults after it
(`lose_answer`, `malformed_after`) and `slow` let the server act and hide the answer: the client
cannot know the outcome, which is the case its retries and reports must be honest about.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

FaultKind = Literal[
    "rate_limit",  # envelope 911048 (server busy)
    "http_429",  # HTTP 429 with Retry-After: seconds
    "http_5xx",  # HTTP 503 from a gateway
    "slow",  # sleep `seconds` before handling: beyond the client's timeout, the server still acts
    "reset",  # connection dropped before any answer, nothing done
    "trickle",  # an answer that arrives one byte every 0.2 s for `seconds`: each read is quick, the whole never
    "lose_answer",  # the server acts, then the connection drops: outcome unknown to the client
    "malformed",  # 200 with a body that is not JSON, nothing done
    "malformed_after",  # the server acts, then answers a body that is not JSON
    "unknown_code",  # an envelope with a code the docs do not list
    "token_expired",  # envelope 10008
    "vanish",  # one path of the request is deleted behind the client's back first (-> whole-call 911020)
    "late_answer",  # the server acts, then answers only after `seconds`: beyond the client's timeout (a slow move)
]
KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]


class TrickledAnswer(Response):
    """A gateway that keeps the connection alive with a byte at a time: no single read ever times out."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        steps = max(1, int(self.seconds / 0.2))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % steps)]})
        for _ in range(steps):
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            await anyio.sleep(0.2)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class DroppedConnection(Response):
    """Starts an answer and then fails: the server closes the connection mid-response, like a reset."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b'{"code": "0", "da', "more_body": True})
        raise ConnectionResetError("sandbox fault: connection dropped")


@dataclass
class FaultRule:
    kind: str
    endpoint: str = "async-remove"  # or "*" for every endpoint
    rate: float = 1.0  # share of matching calls that get the fault
    burst: int | None = None  # at most this many injections in all
    skip: int = 0  # let this many matching calls through first
    seconds: float = 1.0  # for slow and http_429 (Retry-After)
    seen: int = 0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; known: {', '.join(KINDS)}")

    def matches(self, endpoint: str) -> bool:
        return self.endpoint in ("*", endpoint)


@dataclass
class FaultPlan:
    rules: list[FaultRule]
    seed: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: Called for `vanish`: (paths of the request) -> None, deleting one of them for real.
    vanish: Callable[[list[str]], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @classmethod
    def parse(cls, specs: list[str], seed: int = 0) -> FaultPlan:
        """`kind[@endpoint][:rate=0.3][:burst=2][:skip=1][:seconds=1.5]`, one spec per rule."""
        rules = []
        for spec in specs:
            head, *options = spec.split(":")
            kind, _, endpoint = head.partition("@")
            values: dict[str, float | int | str] = {"kind": kind}
            if endpoint:
                values["endpoint"] = endpoint
            for option in options:
                key, _, value = option.partition("=")
                if key not in ("rate", "burst", "skip", "seconds"):
                    raise ValueError(f"unknown fault option {key!r} in {spec!r}")
                values[key] = float(value) if key in ("rate", "seconds") else int(value)
            rules.append(FaultRule(**values))  # type: ignore[arg-type]
        return cls(rules, seed=seed)

    def _pick(self, endpoint: str) -> FaultRule | None:
        with self._lock:
            for rule in self.rules:
                if not rule.matches(endpoint):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip or (rule.burst is not None and rule.fired >= rule.burst):
                    continue
                if self._rng.random() < rule.rate:
                    rule.fired += 1
                    self.injected[rule.kind] += 1
                    return rule
        return None

    async def apply(
        self, endpoint: str, request: Request, handler: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rule = self._pick(endpoint)
        if rule is None:
            return await handler(request)
        kind = rule.kind
        if kind == "rate_limit":
            return _envelope("911048", "server busy, please retry later (sandbox fault)")
        if kind == "http_429":
            return Response("too many requests", status_code=429, headers={"Retry-After": f"{rule.seconds:g}"})
        if kind == "http_5xx":
            return Response("service unavailable", status_code=503)
        if kind == "reset":
            return DroppedConnection()
        if kind == "trickle":
            return TrickledAnswer(rule.seconds)
        if kind == "malformed":
            return Response("<html>502 bad gateway</html>", status_code=200, media_type="application/json")
        if kind == "unknown_code":
            return _envelope("999999", "something the documentation does not list (sandbox fault)")
        if kind == "token_expired":
            return _envelope("10008", "token expired (sandbox fault)")
        if kind == "slow":
            await anyio.sleep(rule.seconds)
            return await handler(request)
        if kind == "vanish" and self.vanish is not None:
            try:
                paths = [item["sourcePath"] for item in await request.json()]
            except (ValueError, TypeError, KeyError):
                paths = []
            if paths:
                await self.vanish(paths)
            return await handler(request)
        if kind == "late_answer":
            acted = await handler(request)
            await anyio.sleep(rule.seconds)
            return acted
        await handler(request)  # the server has acted; its answer is lost
        if kind == "lose_answer":
            return DroppedConnection()
        return Response('{"code": "0", "msg": "succ', status_code=200, media_type="application/json")


def _envelope(code: str, msg: str) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "data": None})
