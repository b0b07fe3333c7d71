"""Section 4: `get_task` on 2,000 task ids through MCP against sequential task/list requests.

A get_task call takes at most 500 ids (the API's hard limit per request), so 2,000 ids are four
calls: made one after another (an agent's usual way) and all at once (a host running tool calls in
parallel). Inside each call the server batches 100 ids a request, a few requests at a time.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    Row,
    baseline_task_list,
    delayed_sandbox,
    efile_stdio,
    make_tree,
    median,
    remove_for_task_ids,
)

SECTION = "4 get_task 2,000 ids"
IDS, PER_CALL = 2000, 500


def _calls(task_ids: list[str]) -> list[dict[str, Any]]:
    return [
        {"name": "get_task", "arguments": {"task_ids": task_ids[i : i + PER_CALL]}}
        for i in range(0, len(task_ids), PER_CALL)
    ]


def sequential_calls(session: Any, task_ids: list[str]) -> float:
    started = time.perf_counter()
    for call in _calls(task_ids):
        report = session.call_tool(call["name"], call["arguments"])
        # Above 50 tasks the answer is by status (the tasks listed are the unfinished ones): count them all.
        known = sum(entry["count"] for entry in report["by_status"])
        assert known == len(call["arguments"]["task_ids"]), report.get("not_found", [])[:3]
    return time.perf_counter() - started


def parallel_calls(session: Any, task_ids: list[str]) -> float:
    """All calls written before any answer is read: the server works on them concurrently."""
    started = time.perf_counter()
    wanted = [session.start_request("tools/call", call) for call in _calls(task_ids)]
    for request_id in wanted:
        assert not session.wait_answer(request_id).get("isError")
    return time.perf_counter() - started


def run(quick: bool, context: dict[str, Any]) -> list[Row]:
    rounds = 3 if quick else 7
    times: dict[str, list[float]] = {"baseline": [], "sequential": [], "parallel": []}
    with delayed_sandbox() as sandbox, tempfile.TemporaryDirectory(prefix="efile-bench-tasks-") as tmp:
        task_ids = remove_for_task_ids(sandbox, make_tree(sandbox, "tasks", IDS // 100, 100))
        assert len(task_ids) == IDS
        with efile_stdio(sandbox, Path(tmp) / "audit.jsonl") as session:
            measure = {
                "baseline": lambda: baseline_task_list(sandbox, task_ids),
                "sequential": lambda: sequential_calls(session, task_ids),
                "parallel": lambda: parallel_calls(session, task_ids),
            }
            requests: dict[str, int] = {}
            for i in range(rounds):
                for name in list(measure)[i % 3 :] + list(measure)[: i % 3]:
                    sandbox.reset_counts()
                    times[name].append(measure[name]())
                    requests[name] = sum(sandbox.request_counts().values())
    context["get_task"] = {"seconds": times, "requests": requests}
    base = median(times["baseline"])
    note = f"median of {rounds}; 20 ms RTT"
    return [
        Row(
            SECTION,
            "baseline: task/list, 100 ids/request, sequential",
            base,
            "s",
            note=f"{requests['baseline']} requests; {note}",
        ),
        Row(
            SECTION,
            f"get_task: {IDS // PER_CALL} calls of {PER_CALL}, one after another",
            median(times["sequential"]),
            "s",
            base,
            note=f"{requests['sequential']} requests; {note}",
        ),
        Row(
            SECTION,
            f"get_task: {IDS // PER_CALL} calls of {PER_CALL}, in parallel",
            median(times["parallel"]),
            "s",
            base,
            note=f"{requests['parallel']} requests; {note}",
        ),
    ]
