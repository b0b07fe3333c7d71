"""`efile-mcp demo`: a scripted agent session, end to end, printed as a readable transcript.

The official MCP client starts `efile-mcp --sandbox` as a subprocess over stdio (exactly as Claude
Desktop would start the real server) and does the clean-up job: "my scratch is over quota: find what is
big and old and delete it" — storage_status, disk_usage, find_paths, a refused dry run, remove_paths by
selection, a refused widening, execution by the token alone (the person confirms), get_task, a replay.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import anyio

from .models.units import human_size


def _say(text: str = "") -> None:
    print(text, flush=True)


def _size(size: int) -> str:
    return human_size(size)


_STATUSES = (
    "would_remove", "removed", "quarantined", "queued", "missing", "failed", "refused", "changed", "covered",
)  # fmt: skip


def _counts(summary: dict[str, Any]) -> str:
    counts = [f"{summary[key]} {key.replace('_', ' ')}" for key in _STATUSES if summary.get(key)]
    if summary.get("total_size"):
        counts.append(f"{_size(summary['total_size'])} in {summary.get('file_count', 0)} files")
    return ", ".join(counts)


def _show_quota(status: dict[str, Any]) -> None:
    for quota in status.get("quota", []):
        used, limit = quota["used_bytes"], quota.get("limit_bytes")
        if limit is None:
            _say(f"     quota {quota['path']}: {_size(used)} used, no limit reported")
            continue
        over = "  OVER QUOTA" if used > limit else ""
        _say(f"     quota {quota['path']}: {_size(used)} of {_size(limit)} ({quota['used_percent']}%){over}")
    if status.get("quota_error"):
        _say(f"     {status['quota_error']}")  # already says "quota is unknown: <the cause>"


def _audit_line(record: dict[str, Any]) -> str:
    """What each audit record says, in a few words (records differ: an intent has no decision)."""
    event = record["event"]
    if event == "intent":
        what = f"about to send {len(record.get('paths') or [])} paths, confirmed by {record.get('confirmed_by')}"
    else:
        what = " ".join(str(part) for part in (record.get("decision"), record.get("reason")) if part)
    return f"{record['time']} {event:<10} {what}"


def _show_items(items: list[dict[str, Any]]) -> None:
    for item in items:
        status = item["status"]
        extra = []
        if item.get("type"):
            extra.append(item["type"])
        if item.get("size") is not None:
            extra.append(_size(item["size"]))
        if item.get("task_id"):
            extra.append(f"task {item['task_id'][:8]}…")
        if item.get("reason"):
            extra.append(item["reason"])
        detail = "  " + textwrap.shorten(f"({'; '.join(extra)})", width=90, placeholder=" …)") if extra else ""
        _say(f"     {status:<13}{item['path']}{detail}")


async def _session(audit_log: Path, server_log: Any) -> int:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "efile_mcp", "--sandbox", "--audit-log", str(audit_log)],
        env={
            **{key: value for key, value in os.environ.items() if key.startswith(("PYTHON", "VIRTUAL_ENV"))},
            # The demo's person answers the form: no review page in a browser (its address would only go to the log).
            "EFILE_REVIEW_BROWSER": "never",
        },
    )

    async def person(context: Any, params: Any) -> Any:
        """Claude Desktop would show this form to the person; the demo's person reads it and agrees."""
        import mcp.types as types

        _say("person ◂ a confirmation form from the server, shown to the person (not the model):")
        for line in params.message.splitlines():
            _say(f"     │ {line}")
        _say("person ▸ accepts")
        return types.ElicitResult(action="accept", content={"confirm": True})

    # The server's stderr (its log) goes to a file: the transcript shows the conversation.
    async with Client(stdio_client(params, errlog=server_log), mode="legacy", elicitation_callback=person) as client:
        _say(f"agent ▸ connected over stdio, protocol {client.protocol_version}")
        tools = (await client.list_tools()).tools
        for tool in tools:
            hints = tool.annotations
            kind = (
                "read-only"
                if hints and hints.read_only_hint
                else "destructive"
                if hints and hints.destructive_hint
                else "writes"
            )
            _say(f"     tool {tool.name:<13} {kind}")

        async def call(name: str, arguments: dict[str, Any]) -> tuple[bool, dict[str, Any] | str]:
            shown = json.dumps(arguments, ensure_ascii=False)
            _say()
            _say(textwrap.shorten(f"agent ▸ {name} {shown}", width=160, placeholder=" …"))
            result = await client.call_tool(name, arguments)
            if result.is_error:
                text = " ".join(block.text for block in result.content if hasattr(block, "text"))
                _say(textwrap.fill(f"server ◂ REFUSED: {text}", width=110, subsequent_indent="          "))
                return False, text
            return True, result.structured_content or {}

        _, status = await call("storage_status", {})
        assert isinstance(status, dict)
        _say(f"server ◂ home {status['home']}; removal allowed below {', '.join(status['allowed_roots'])}")
        _show_quota(status)
        root = status["home"]
        scratch = f"{root}/scratch"

        _, usage = await call("disk_usage", {"path": scratch, "top": 3})
        assert isinstance(usage, dict)
        _say(
            f"server ◂ {usage['path']}: {_size(usage['total_size'])} in {usage['file_count']} files, "
            f"{usage['dir_count']} folders ({usage['requests']} listings)"
        )
        for child in usage["children"]:
            _say(f"     {_size(child['size']):>9}  {child['file_count']:>4} files  {child['type']:<9} {child['path']}")
        if usage.get("others"):
            _say(f"     {_size(usage['others']['size']):>9}  in {usage['others']['count']} more")

        select = {"path": scratch, "name": "*.dat", "type": "file", "older_than_days": 30}
        _, found = await call("find_paths", select)
        assert isinstance(found, dict)
        more = " so far (next_cursor reads on)" if found.get("next_cursor") else ""
        _say(f"server ◂ {found['total_matches']} matches{more}, {_size(found['total_size'])}; largest:")
        for match in found["matches"][:3]:
            _say(f"     {_size(match['size']):>9}  {match['modified']}  {match['path']}")

        _, refused = await call(
            "remove_paths", {"paths": [f"{root}/.ssh", f"{scratch}/*.log", "/etc/passwd", f"{scratch}/tmp.log"]}
        )
        assert isinstance(refused, dict)
        _say(f"server ◂ dry run: {_counts(refused['summary'])}")
        _show_items(refused.get("items", []))

        _say(
            "\n(removal is a restorable quarantine by default, but quarantined data still counts against the quota:"
            "\n to get below it, the agent asks for mode delete, which is permanent, and says so to the person)"
        )
        _, plan = await call("remove_paths", {"select": select, "mode": "delete"})
        assert isinstance(plan, dict)
        _say(
            f"server ◂ dry run of the selection: {_counts(plan['summary'])} "
            f"(a summary: {len(json.dumps(plan))} characters for {plan['summary']['would_remove']} paths)"
        )
        for group in plan.get("by_parent", []):
            _say(f"     {group['count']:>4} paths  {_size(group['size']):>9}  in {group['parent']}")
        token = plan["confirmation_token"]

        _say("\n(the agent tries to execute the token with a wider selection than was previewed)")
        await call(
            "remove_paths", {"select": {**select, "older_than_days": 0}, "dry_run": False, "confirmation_token": token}
        )
        _say("\n(the agent executes the plan by its token alone; the server asks the person first)")
        _, done = await call("remove_paths", {"dry_run": False, "confirmation_token": token})
        assert isinstance(done, dict)
        _say(f"server ◂ executed: {_counts(done['summary'])}")
        if done.get("task_ids") or done.get("task_count"):
            follow = {"plan_id": done["plan_id"]} if done.get("task_count") else {"task_ids": done["task_ids"]}
            _, tasks = await call("get_task", {**follow, "wait_seconds": 30})
            assert isinstance(tasks, dict)
            counts = ", ".join(f"{c['count']} {c['status']}" for c in tasks["by_status"])
            _say(f"server ◂ tasks: {counts}; all ended: {tasks['all_terminal']}")
        _say("\n(the same token, replayed)")
        await call("remove_paths", {"dry_run": False, "confirmation_token": token})
        _, after_status = await call("storage_status", {})
        assert isinstance(after_status, dict)
        _say("server ◂ after the clean-up:")
        _show_quota(after_status)
        _, after = await call("disk_usage", {"path": scratch, "top": 3})
        assert isinstance(after, dict)
        _say(
            f"server ◂ {scratch} now holds {_size(after['total_size'])} in {after['file_count']} files: "
            + ", ".join(c["path"].rsplit("/", 1)[1] for c in after["children"])
        )
    return 0


def run_demo() -> int:
    _say("efile-mcp demo: an agent session over stdio against an embedded efile sandbox")
    _say("(a temporary sample home; nothing outside it is touched)\n")
    with tempfile.TemporaryDirectory(prefix="efile-mcp-demo-") as tmp:
        audit_log = Path(tmp) / "audit.jsonl"
        with (Path(tmp) / "server.log").open("w+", encoding="utf-8") as server_log:
            try:
                code = anyio.run(_session, audit_log, server_log)
            except BaseException:
                server_log.seek(0)
                sys.stderr.write(server_log.read()[-4000:])  # what the server said before it went wrong
                raise
        lines = audit_log.read_text(encoding="utf-8").splitlines() if audit_log.exists() else []
        _say(f"\naudit log: {len(lines)} lines (plan, refusals, execution), e.g.")
        for line in lines:
            record = json.loads(line)
            _say(f"     {_audit_line(record)}")
    return code
