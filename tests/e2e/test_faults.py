"""Removals of a few hundred paths under injected faults: nothing lost, nothing unconfirmed, nothing half-known."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from efile_mcp.sandbox import RunningSandbox
from efile_mcp.sandbox.faults import FaultPlan, FaultRule
from efile_mcp.server import build_server

from ..conftest import audit_lines, call_ok
from ..invariants import FIGURES, check_invariants, tree


def three_hundred_files(sandbox: RunningSandbox) -> list[str]:
    base = f"{sandbox.home}/scratch/big-run"
    return [f"{base}/shard-{i % 3}/out-{i:04d}.dat" for i in range(300)]


async def plan_and_execute(
    client: Client, paths: list[str]
) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
    plan = await call_ok(client, "remove_paths", {"paths": paths})
    assert plan["summary"]["would_remove"] == len(set(paths)) and plan["confirmation_token"]
    result = await client.call_tool(
        "remove_paths",
        {"paths": paths, "dry_run": False, "confirmation_token": plan["confirmation_token"], "detail": "full"},
    )
    text = " ".join(getattr(block, "text", "") for block in result.content)
    if result.is_error:
        return plan, None, text
    return plan, result.structured_content, None


FAULTS = {
    # name: (rules on async-remove unless said, settings overrides, unknown outcome possible)
    # 40% of calls turned away; with 12 attempts a batch fails for good with odds 0.4^12, about 1e-5.
    "rate_limited_share": (
        [FaultRule("rate_limit", rate=0.4), FaultRule("rate_limit", endpoint="file/list", rate=0.3)],
        {"retry_attempts": 12},
        False,
    ),
    "rate_limited_burst": ([FaultRule("rate_limit", burst=4)], {}, False),
    "http_429_retry_after": ([FaultRule("http_429", burst=3, seconds=0.3)], {}, False),
    "http_5xx": ([FaultRule("http_5xx", rate=0.4)], {"retry_attempts": 12}, False),
    "slow_beyond_timeout": ([FaultRule("slow", burst=1, seconds=1.5)], {"request_timeout": 0.6}, True),
    "connection_reset": ([FaultRule("reset", rate=0.3)], {"retry_attempts": 12}, False),
    "answer_lost_after_acting": ([FaultRule("lose_answer", burst=1)], {}, True),
    "malformed_json": ([FaultRule("malformed", burst=1)], {}, False),
    "malformed_after_acting": ([FaultRule("malformed_after", burst=1)], {}, True),
    "unknown_code": ([FaultRule("unknown_code", burst=1)], {}, False),
    "path_vanishes_before_execution": ([FaultRule("vanish", burst=2)], {}, False),
}


@pytest.mark.parametrize("name", list(FAULTS))
async def test_invariant_holds_under_fault(
    name: str, sandbox: RunningSandbox, make_settings: Any, audit_path: Path
) -> None:
    rules, overrides, unknown_allowed = FAULTS[name]
    paths = three_hundred_files(sandbox)
    before = tree(sandbox.root)
    server = build_server(make_settings(retry_budget=10.0, **overrides))
    async with Client(server) as client:
        sandbox.sandbox.faults = FaultPlan(rules, seed=7)
        _, done, error = await plan_and_execute(client, paths)
    injected = sandbox.sandbox.faults.injected
    sandbox.sandbox.faults = None
    assert error is None, error
    assert done is not None
    report = check_invariants(
        sandbox,
        confirmed=paths,
        before=before,
        items=done["items"],
        audit_path=audit_path,
        unknown_outcome_allowed=unknown_allowed,
    )
    assert sum(injected.values()) > 0, "the fault never fired"
    FIGURES.update({f"faults:{k}": v for k, v in injected.items()})
    if name in ("malformed_json", "unknown_code"):
        # Turned away (nothing done) for one batch of 100: failed with the API's reason, still on disk.
        assert report.statuses["failed"] == 100 and report.statuses["removed"] == 200
    elif name == "path_vanishes_before_execution":
        assert report.statuses["missing"] == 2 and report.statuses["removed"] == 298
        assert {i["path"] for i in done["items"] if i["status"] == "missing"} == set(sandbox.sandbox.vanished_paths)
    else:
        # Transient faults, retried: everything ends removed (or missing where a lost answer hid our own removal).
        assert report.statuses["removed"] + report.statuses["missing"] == 300, report.statuses
    if name == "answer_lost_after_acting":
        # The audit counts every path; the answer lists a bounded number, each with the reason.
        missing = [i for i in done["items"] if i["status"] == "missing"]
        assert report.statuses["missing"] == 100 and done["summary"]["missing"] == 100
        assert missing and all("most likely removed by this call" in i["reason"] for i in missing)
    if name == "malformed_after_acting":
        verified = [i for i in done["items"] if i.get("reason") and "listing shows the path is gone" in i["reason"]]
        # Every path listed as verified gone is removed; the audit (above) counts all 300 removed or missing.
        assert all(i["status"] == "removed" for i in verified)
        assert verified or done.get("items_not_shown"), "an answer that lists every item shows the verified ones"


async def test_per_task_permission_failure_inside_a_batch(
    sandbox: RunningSandbox, make_settings: Any, audit_path: Path
) -> None:
    paths = three_hundred_files(sandbox)
    denied = set(paths[10:15])
    sandbox.sandbox.path_faults = {p: ("911030", f"permission denied: {p}") for p in denied}
    before = tree(sandbox.root)
    async with Client(build_server(make_settings())) as client:
        _, done, error = await plan_and_execute(client, paths)
    assert error is None and done is not None
    report = check_invariants(sandbox, confirmed=paths, before=before, items=done["items"], audit_path=audit_path)
    failed = {i["path"]: i for i in done["items"] if i["status"] == "failed"}
    assert set(failed) == denied
    assert all(i["error_code"] == "911030" and "permission denied" in i["reason"] for i in failed.values())
    assert report.statuses["removed"] == 295
    FIGURES["faults:per_task_911030"] += len(denied)


@pytest.mark.parametrize("sandbox", [{"inline_max_entries": 10}], indirect=True)
async def test_task_failing_on_the_server_after_being_queued(
    sandbox: RunningSandbox, make_settings: Any, audit_path: Path
) -> None:
    paths = three_hundred_files(sandbox)
    doomed = set(paths[200:203])
    sandbox.sandbox.path_faults = {p: ("911030", "permission denied") for p in doomed}
    before = tree(sandbox.root)
    async with Client(build_server(make_settings())) as client:
        _, done, error = await plan_and_execute(client, paths)
        assert error is None and done is not None
        assert {i["status"] for i in done["items"]} == {"queued"}
        check_invariants(sandbox, confirmed=paths, before=before, items=done["items"], audit_path=audit_path)
        # 300 tasks: the execution names none (task_count), get_task follows them all by the plan id.
        assert "task_ids" not in done and done["task_count"] == 300
        report = await call_ok(client, "get_task", {"plan_id": done["plan_id"], "wait_seconds": 30})
    assert report["all_terminal"]
    assert {c["status"]: c["count"] for c in report["by_status"]} == {"complete": 297, "fail": 3}
    # Above 50 tasks only those not complete are listed: the three that failed, with their reasons.
    by_path = {t["source_path"]: t for t in report["tasks"]}
    assert set(by_path) == doomed and report["tasks_not_shown"] == 297
    assert all(by_path[p]["status"] == "fail" and by_path[p]["error_code"] == "911030" for p in doomed)
    FIGURES["faults:queued_task_fail"] += len(doomed)


async def test_token_expiry_mid_batch_stops_and_keeps_what_was_obtained(
    sandbox: RunningSandbox, make_settings: Any, audit_path: Path
) -> None:
    paths = three_hundred_files(sandbox)
    before = tree(sandbox.root)
    async with Client(build_server(make_settings(concurrency=1))) as client:
        sandbox.sandbox.faults = FaultPlan([FaultRule("token_expired", skip=1)])
        _, done, error = await plan_and_execute(client, paths)
    sandbox.sandbox.faults = None
    assert done is None and error is not None
    assert "EFILE_TOKEN" in error and "100 path(s) had already been submitted" in error and "get_task" in error
    assert "200 were not sent" in error and "audit log" in error
    report = check_invariants(sandbox, confirmed=paths, before=before, items=None, audit_path=audit_path)
    assert report.statuses == Counter({"removed": 100, "failed": 200})
    execution = [line for line in map(json.loads, audit_path.read_text().splitlines()) if line["event"] == "execution"][
        -1
    ]
    assert len(execution["task_ids"]) == 100 and "10008" in execution["error"]
    # The third batch was never started once the token was refused.
    assert sandbox.sandbox.request_counts["async-remove"] == 2
    FIGURES["faults:token_expired"] += 1


async def test_a_server_that_keeps_failing_ends_in_a_clear_error_not_a_hang(
    sandbox: RunningSandbox, make_settings: Any, audit_path: Path
) -> None:
    paths = three_hundred_files(sandbox)
    before = tree(sandbox.root)
    async with Client(build_server(make_settings(retry_budget=2.0, retry_attempts=4))) as client:
        plan = await call_ok(client, "remove_paths", {"paths": paths})
        sandbox.sandbox.faults = FaultPlan([FaultRule("rate_limit", endpoint="async-remove")])
        with anyio_fail_after(20):
            done = await call_ok(
                client,
                "remove_paths",
                {"paths": paths, "dry_run": False, "confirmation_token": plan["confirmation_token"], "detail": "full"},
            )
    sandbox.sandbox.faults = None
    report = check_invariants(sandbox, confirmed=paths, before=before, items=done["items"], audit_path=audit_path)
    assert report.statuses == Counter({"failed": 300})
    assert all(i["error_code"] == "911048" and "gave up after" in i["reason"] for i in done["items"])
    assert sandbox.sandbox.request_counts["async-remove"] <= 3 * 4
    assert tree(sandbox.root) == before


def anyio_fail_after(seconds: float):  # type: ignore[no-untyped-def]
    import anyio

    return anyio.fail_after(seconds)


# ---------------------------------------------------------------------------- regressions found in review


@pytest.mark.parametrize("then", ["http_429", "unknown_code", "token_expired"])
async def test_an_answer_lost_after_acting_is_never_reported_as_not_done(
    then: str, sandbox: RunningSandbox, make_settings: Any, audit_path: Path
) -> None:
    """The first attempt acts and its answer is lost; the retry is turned away. The path is gone: the
    report must not say failed or not sent (nothing done), but removed (verified) or unknown."""
    target = f"{sandbox.home}/scratch/tmp.log"
    async with Client(build_server(make_settings(retry_attempts=3, retry_budget=5.0))) as client:
        plan = await call_ok(client, "remove_paths", {"paths": [target]})
        sandbox.sandbox.faults = FaultPlan([FaultRule("lose_answer", burst=1), FaultRule(then, seconds=0.01)])
        result = await client.call_tool(
            "remove_paths",
            {"paths": [target], "dry_run": False, "confirmation_token": plan["confirmation_token"], "detail": "full"},
        )
    sandbox.sandbox.faults = None
    assert not (sandbox.root / "scratch" / "tmp.log").exists()
    (item,) = [line for line in audit_lines(audit_path) if line["event"] == "execution"][-1]["items"]
    if then == "token_expired":
        assert result.is_error and "unknown outcome" in " ".join(getattr(b, "text", "") for b in result.content)
        assert item["status"] == "failed" and item["error_code"].startswith("outcome_unknown")
    else:
        assert not result.is_error and result.structured_content is not None
        assert result.structured_content["items"][0]["status"] == "removed"
        assert item["status"] == "removed"


@pytest.mark.parametrize("attempt", range(3))
async def test_a_vanished_path_in_a_shrinking_directory_never_hides_present_ones(
    attempt: int, sandbox: RunningSandbox, make_settings: Any, audit_path: Path
) -> None:
    """Other batches of the same call delete siblings while the isolation lists the parent: pages shift.
    A path the listing misses must still be sent, never reported missing while it is on disk."""
    folder = sandbox.root / "scratch" / "many"
    folder.mkdir()
    names = [f"a-{i:03d}" for i in range(200)] + [f"m-{i:04d}" for i in range(800)] + [f"z-{i:03d}" for i in range(100)]
    for name in names:
        (folder / name).write_text("x")
    virtual = f"{sandbox.home}/scratch/many"
    paths = [f"{virtual}/z-{i:03d}" for i in range(100)] + [f"{virtual}/a-{i:03d}" for i in range(200)]
    before = tree(sandbox.root)
    async with Client(build_server(make_settings())) as client:
        plan = await call_ok(client, "remove_paths", {"paths": paths})
        sandbox.sandbox.faults = FaultPlan([FaultRule("vanish", burst=1)])
        done = await call_ok(
            client,
            "remove_paths",
            {"paths": paths, "dry_run": False, "confirmation_token": plan["confirmation_token"], "detail": "full"},
        )
    sandbox.sandbox.faults = None
    check_invariants(sandbox, confirmed=paths, before=before, items=done["items"], audit_path=audit_path)
    assert [i["path"] for i in done["items"] if i["status"] == "missing"] == sandbox.sandbox.vanished_paths
    assert done["summary"]["removed"] == 299
