"""`efile-mcp demo`: a scripted agent session, end to end, printed as a readable transcript.

The official MCP client starts `efile-mcp --sandbox` as a subprocess over stdio (exactly as Claude
Desktop would start the real server), then lists, dry-runs, is refused, confirms, and waits.
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


def _say(text: str = "") -> None:
    print(text, flush=True)


def _counts(summary: dict[str, Any]) -> str:
    counts = [f"{value} {key.replace('_', ' ')}" for key, value in summary.items() if value and key != "total_size"]
    if summary.get("total_size"):
        counts.append(f"{summary['total_size']} B in files named directly")
    return ", ".join(counts)


def _show_items(items: list[dict[str, Any]]) -> None:
    for item in items:
        status = item["status"]
        extra = []
        if item.get("type"):
            extra.append(item["type"])
        if item.get("size") is not None:
            extra.append(f"{item['size']} B")
        if item.get("task_id"):
            extra.append(f"task {item['task_id'][:8]}…")
        if item.get("reason"):
            extra.append(item["reason"])
        detail = "  " + textwrap.shorten(f"({'; '.join(extra)})", width=90, placeholder=" …)") if extra else ""
        _say(f"     {status:<13}{item['path']}{detail}")


async def _session(audit_log: Path) -> int:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "efile_mcp", "--sandbox", "--audit-log", str(audit_log)],
        env={key: value for key, value in os.environ.items() if key.startswith(("PYTHON", "VIRTUAL_ENV"))},
    )
    async def person(context: Any, params: Any) -> Any:
        """Claude Desktop would show this form to the person; the demo's person reads it and agrees."""
        import mcp.types as types

        _say("person ◂ a confirmation form from the server, shown to the person (not the model):")
        for line in params.message.splitlines():
            _say(f"     │ {line}")
        _say("person ▸ ticks \"Delete permanently\" and accepts")
        return types.ElicitResult(action="accept", content={"confirm": True})

    async with Client(params, mode="legacy", elicitation_callback=person) as client:
        _say(f"agent ▸ connected over stdio, protocol {client.protocol_version}")
        tools = (await client.list_tools()).tools
        for tool in tools:
            hints = tool.annotations
            kind = "read-only" if hints and hints.read_only_hint else "destructive" if hints and hints.destructive_hint else "writes"
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

        _, home = await call("list_files", {})
        assert isinstance(home, dict)
        _say(f"server ◂ {home['path']}: {home['total']} entries")
        for entry in home["entries"]:
            _say(f"     {entry['type']:<10}{entry['name']}")
        root = home["path"]
        scratch = f"{root}/scratch"
        _, listing = await call("list_files", {"path": scratch})
        assert isinstance(listing, dict)
        for entry in listing["entries"]:
            _say(f"     {entry['type']:<10}{entry['name']:<16}{entry['size'] or 0:>8} B  {entry['modified']}")

        request = [f"{scratch}/run-001", f"{scratch}/big-run", f"{scratch}/tmp.log", f"{scratch}/run-001/checkpoints",
                   f"{root}/.ssh", f"{scratch}/*.log", f"{scratch}/run-999", "/etc/passwd"]
        _, plan = await call("remove_paths", {"paths": request})
        assert isinstance(plan, dict)
        _say(f"server ◂ dry run: {_counts(plan['summary'])}")
        _show_items(plan["items"])
        _say(f"     confirm_paths = {len(plan['confirm_paths'])} paths, token expires {plan['expires_at']}")

        _say("\n(the agent tries to slip an extra path into the confirmed set)")
        await call("remove_paths", {"paths": [*plan["confirm_paths"], f"{root}/notes.txt"], "dry_run": False,
                                    "confirmation_token": plan["confirmation_token"]})
        _say("\n(the agent executes exactly what was previewed; the server asks the person first)")
        _, done = await call("remove_paths", {"paths": plan["confirm_paths"], "dry_run": False,
                                              "confirmation_token": plan["confirmation_token"]})
        assert isinstance(done, dict)
        _say(f"server ◂ executed: {_counts(done['summary'])}")
        _show_items(done["items"])
        queued = [item["task_id"] for item in done["items"] if item["status"] == "queued"]
        if queued:
            _, tasks = await call("get_task", {"task_ids": queued, "wait_seconds": 30})
            assert isinstance(tasks, dict)
            for task in tasks["tasks"]:
                _say(f"server ◂ task {task['task_id'][:8]}… {task['status']}: {task['processed_num']}/{task['total_num']}"
                     f" entries, {task['source_path']}")
        _say("\n(the same token, replayed)")
        await call("remove_paths", {"paths": plan["confirm_paths"], "dry_run": False,
                                    "confirmation_token": plan["confirmation_token"]})
        _, after = await call("list_files", {"path": scratch})
        assert isinstance(after, dict)
        _say(f"server ◂ {scratch} now holds: {', '.join(e['name'] for e in after['entries']) or 'nothing'}")
    return 0


def run_demo() -> int:
    _say("efile-mcp demo: an agent session over stdio against an embedded efile sandbox")
    _say("(a temporary sample home; nothing outside it is touched)\n")
    with tempfile.TemporaryDirectory(prefix="efile-mcp-demo-") as tmp:
        audit_log = Path(tmp) / "audit.jsonl"
        code = anyio.run(_session, audit_log)
        lines = audit_log.read_text(encoding="utf-8").splitlines() if audit_log.exists() else []
        _say(f"\naudit log: {len(lines)} lines (plan, refusals, execution), e.g.")
        for line in lines:
            record = json.loads(line)
            _say(f"     {record['time']} {record['event']:<10} {record.get('decision')} {record.get('reason') or ''}")
    return code
