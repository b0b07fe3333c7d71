"""The audit log's promises: whole private lines, durable before the tool returns, failing closed before
anything is sent, never split by a line reader, bounded, following rotation, never following a link."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from mcp import Client

from efile_mcp.errors import AuditUnavailable, ConfigError, EfileMcpError
from efile_mcp.guard import audit as audit_module
from efile_mcp.guard.audit import AuditLog
from efile_mcp.sandbox import RunningSandbox

from .conftest import audit_lines, call_error, call_ok, run_cli


def on_disk(sandbox: RunningSandbox, virtual: str) -> Path:
    return sandbox.root / virtual.removeprefix(sandbox.home + "/")


class _FaultyOs(ModuleType):
    """The real `os` as the audit module sees it, except the calls a test makes fail (a full disk)."""

    def __init__(self, **failing: int) -> None:
        super().__init__("os")
        self._failing = failing

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name in self._failing:
            code = self._failing[name]

            def fail(*args: Any, **kwargs: Any) -> Any:
                raise OSError(code, os.strerror(code))

            return fail
        return real


def fail_audit(monkeypatch: pytest.MonkeyPatch, **failing: int) -> None:
    monkeypatch.setattr(audit_module, "os", _FaultyOs(**failing))


# ---------------------------------------------------------------------------- lines: private, whole, durable


async def test_audit_file_is_private_and_lines_are_complete_json(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "audit.jsonl"
    log = AuditLog(path)
    await log.write("plan", tool="remove_paths", paths=["/a/line\nbreak", "/a/ünï"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (record,) = audit_lines(path)
    assert record["paths"] == ["/a/line\nbreak", "/a/ünï"] and record["event"] == "plan" and record["time"]


def test_an_existing_world_readable_audit_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    path.chmod(0o644)
    AuditLog(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_unwritable_audit_path_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write the audit log"):
        AuditLog(blocker / "audit.jsonl")


async def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    logs = [AuditLog(path), AuditLog(path)]  # two descriptors, as two processes would have
    big = ["/p/" + "x" * 200 + str(i) for i in range(300)]  # lines far beyond PIPE_BUF

    async def writer(n: int) -> None:
        for i in range(20):
            await logs[n % 2].write("plan", writer=n, i=i, paths=big)

    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(writer, n)
    records = audit_lines(path)
    assert len(records) == 120 and all(r["paths"] == big for r in records)


def test_audit_lines_from_threads_are_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    threads = [
        threading.Thread(
            target=lambda n=n: [
                log._append(json.dumps({"n": n, "pad": "y" * 70_000}).encode() + b"\n") for _ in range(10)
            ]
        )
        for n in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(audit_lines(path)) == 40


async def test_the_api_token_never_reaches_results_or_the_audit_log(
    client: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    home = sandbox.home
    texts: list[str] = []
    for name, arguments in [
        ("list_files", {}),
        ("remove_paths", {"paths": [f"{home}/scratch/tmp.log", f"{home}/.ssh", "/etc"]}),
        ("get_task", {"task_ids": ["0" * 32]}),
        ("remove_paths", {"paths": [f"{home}/scratch/tmp.log"], "dry_run": False, "confirmation_token": "x"}),
    ]:
        result = await client.call_tool(name, arguments)
        texts.append(json.dumps(result.structured_content) + " ".join(getattr(b, "text", "") for b in result.content))
    texts.append(audit_path.read_text())
    assert all(sandbox.token not in text for text in texts)


# ---------------------------------------------------------------------------- 1. fail closed, and first


@pytest.mark.parametrize("failing", ["write", "fsync"])
async def test_a_record_that_cannot_be_written_raises_audit_unavailable_naming_file_reason_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    fail_audit(monkeypatch, **{failing: errno.ENOSPC})
    with pytest.raises(AuditUnavailable) as caught:
        await log.write("intent", tool="remove_paths", paths=["/a/b"])
    message = str(caught.value)
    assert isinstance(caught.value, EfileMcpError)
    assert str(path) in message and "No space left on device" in message
    assert "nothing was deleted" in message
    assert "free space" in message and "EFILE_AUDIT_LOG" in message


async def test_a_failed_write_leaves_no_half_line_to_glue_the_next_record_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills in the middle of a record: the torn part is taken back, the next line is whole."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    await log.write("plan", n=1)
    calls = 0
    real_write = os.write

    def half_then_full(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    faulty = _FaultyOs()
    faulty.write = half_then_full  # type: ignore[attr-defined]
    monkeypatch.setattr(audit_module, "os", faulty)
    with pytest.raises(AuditUnavailable):
        await log.write("plan", n=2, pad="z" * 10_000)
    monkeypatch.undo()
    await log.write("plan", n=3)
    assert [r["n"] for r in audit_lines(path)] == [1, 3]


async def test_with_the_audit_file_no_longer_writable_execution_sends_nothing_and_says_why(
    client: Client, sandbox: RunningSandbox, audit_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reproduced break: with the disk (or quota) full under the audit file, execution still deleted,
    wrote no record, and answered a bare error with no per-path state."""
    home = sandbox.home
    paths = [f"{home}/scratch/tmp.log", f"{home}/scratch/run-001"]
    plan = await call_ok(client, "remove_paths", {"paths": paths})
    lines_before = audit_lines(audit_path)
    fail_audit(monkeypatch, write=errno.ENOSPC)
    text = await call_error(
        client, "remove_paths", {"paths": paths, "dry_run": False, "confirmation_token": plan["confirmation_token"]}
    )
    monkeypatch.undo()
    assert "audit" in text and "could not be written" in text and "nothing was deleted" in text
    assert str(audit_path) in text and "No space left on device" in text
    assert sandbox.sandbox.received_remove_paths == []
    assert sandbox.sandbox.request_counts["async-remove"] == 0
    assert all(on_disk(sandbox, p).exists() for p in paths)
    assert audit_lines(audit_path) == lines_before


# ---------------------------------------------------------------------------- 2. never split by a line reader


async def test_unicode_line_separators_are_escaped_and_decode_to_the_same_path(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    names = ["/a/x\u2028y", "/a/x\u2029y", "/a/x\u0085y", "/a/x\u000by\u000cz\u001c\u001d\u001e", "/a/数据"]
    await log.write("plan", paths=names)
    await log.write("plan", paths=["/b"])
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["paths"] == names and json.loads(lines[1])["paths"] == ["/b"]
    assert "\\u2028" in lines[0] and "\\u2029" in lines[0] and "\\u0085" in lines[0] and "数据" in lines[0]


# ---------------------------------------------------------------------------- 3. bounded records


async def test_an_over_long_string_is_truncated_in_the_record_with_its_length(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    huge = "/" + "x" * 4_000_000
    fine = "/" + "y" * 4000  # a path the policy accepts is recorded whole
    await log.write("refusal", paths=[huge, fine], reason="x")
    assert path.stat().st_size < 20_000
    (record,) = audit_lines(path)
    assert record["paths"][0] == huge[:300] + f"…({len(huge)} characters)"
    assert record["paths"][1] == fine


async def test_a_refusal_lists_a_bounded_number_of_paths_and_counts_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    paths = [f"/a/{i}" for i in range(5000)]
    await log.write("refusal", reason="too_many_paths", paths=paths, paths_count=5000)
    (record,) = audit_lines(path)
    assert record["paths"] == paths[:200] and record["paths_not_listed"] == 4800 and record["paths_count"] == 5000


async def test_a_four_megabyte_path_request_is_refused_with_a_small_audit_line(
    client: Client, sandbox: RunningSandbox, audit_path: Path
) -> None:
    huge = f"{sandbox.home}/scratch/" + "x" * 4_000_000
    many = [f"{sandbox.home}/scratch/../{i}" for i in range(5000)]
    for paths in ([huge], many):
        await client.call_tool("remove_paths", {"paths": paths})  # refused, as a plan's items or a tool error
    assert sandbox.sandbox.request_counts["async-remove"] == 0
    assert 0 < audit_path.stat().st_size < 500_000
    assert all(len(line) < 300_000 for line in audit_path.read_text(encoding="utf-8").splitlines())


# ---------------------------------------------------------------------------- 4. rotation and creation


@pytest.mark.skipif(os.name == "nt", reason="an open file cannot be renamed on Windows")
async def test_a_rotated_audit_file_is_reopened_at_its_path(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    await log.write("plan", n=1)
    path.rename(tmp_path / "audit.jsonl.1")  # logrotate
    await log.write("plan", n=2)
    path.unlink()  # deleted by hand
    await log.write("plan", n=3)
    assert [r["n"] for r in audit_lines(tmp_path / "audit.jsonl.1")] == [1]
    assert [r["n"] for r in audit_lines(path)] == [3]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="no O_NOFOLLOW on this platform")
def test_a_symlink_planted_at_the_audit_path_is_refused_at_start(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("precious\n")
    path = tmp_path / "audit.jsonl"
    path.symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        AuditLog(path)
    assert target.read_text() == "precious\n"
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "not-yet")
    with pytest.raises(ConfigError, match="symbolic link"):
        AuditLog(dangling)
    assert not (tmp_path / "not-yet").exists()


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="no O_NOFOLLOW on this platform")
async def test_a_symlink_planted_after_rotation_is_refused_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("precious\n")
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    await log.write("plan", n=1)
    path.rename(tmp_path / "audit.jsonl.1")
    path.symlink_to(target)
    with pytest.raises(AuditUnavailable, match="symbolic link") as caught:
        await log.write("intent", n=2)
    assert "nothing was deleted" in str(caught.value)
    assert target.read_text() == "precious\n"
    assert [r["n"] for r in audit_lines(tmp_path / "audit.jsonl.1")] == [1]


# ---------------------------------------------------------------------------- 5. the sandbox's own audit file


def test_the_sandbox_audit_file_lives_in_a_private_directory(tmp_path: Path) -> None:
    import tempfile

    root = tmp_path / "root"
    root.mkdir()
    proc = run_cli("--sandbox", str(root), "--log-level", "INFO", timeout=60)  # where the audit is: a start-up fact
    assert "Traceback" not in proc.stderr, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if "sandbox: audit log" in line]
    audit = Path(line.split("sandbox: audit log ", 1)[1].strip())
    assert audit != Path(tempfile.gettempdir()) / "efile-mcp-sandbox-audit.jsonl"
    parent = audit.parent
    assert parent != Path(tempfile.gettempdir()) and parent.is_dir()
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700 and parent.stat().st_uid == os.getuid()
    second = run_cli("--sandbox", str(root), "--log-level", "INFO", timeout=60)
    (line2,) = [line for line in second.stderr.splitlines() if "sandbox: audit log" in line]
    # The same DIR keeps its audit (and state) in the same private place: a token of one sandbox process
    # works in the next, and the person finds the log where the line said.
    assert Path(line2.split("sandbox: audit log ", 1)[1].strip()) == audit
    shutil.rmtree(parent)
