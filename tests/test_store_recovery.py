"""A damaged state file: set aside (kept, named), a new one started, every earlier token refused, one WARNING."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from efile_mcp.guard.store import SQLITE_FILE, open_store

from .conftest import child_env

GARBAGE = b"this is not a database\x00" * 300


async def test_a_damaged_state_file_is_set_aside_and_a_new_one_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / SQLITE_FILE).write_bytes(GARBAGE)
    with caplog.at_level(logging.WARNING):
        store = open_store(None, tmp_path)
    try:
        await store.save_plan("p1", b"plan", expires_at=4e9)
        assert await store.load_plan("p1") == b"plan"
    finally:
        await store.aclose()
    (kept,) = tmp_path.glob(f"{SQLITE_FILE}.damaged-*")
    assert kept.read_bytes() == GARBAGE  # kept as it was, for whoever wants to look
    assert ((tmp_path / SQLITE_FILE).stat().st_mode & 0o777) == 0o600
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert str(kept) in line and "started a new one" in line and "tokens issued before now are refused" in line
    assert "EFILE_STATE_DIR" not in line  # not the wrong fix


async def _call(env: dict[str, str], home: Path, arguments: dict[str, object]) -> tuple[object, str]:
    import tempfile

    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "efile_mcp", "--sandbox", str(home)], env=env)
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            result = await client.call_tool("remove_paths", arguments)
        errlog.seek(0)
        return result, errlog.read()


async def test_a_token_issued_before_the_state_file_broke_is_refused(tmp_path: Path) -> None:
    from efile_mcp.sandbox import seed_sample_tree
    from efile_mcp.sandbox.identity import identity_directory

    home = seed_sample_tree(tmp_path / "home")
    env = child_env(XDG_STATE_HOME=str(tmp_path / "state"), EFILE_CONFIRM="token")
    target = "/public/home/demo/scratch/tmp.log"
    plan, _ = await _call(env, home, {"paths": [target]})
    token = plan.structured_content["confirmation_token"]  # type: ignore[attr-defined]
    state_file = identity_directory(home.resolve(), tmp_path / "state" / "efile-mcp") / SQLITE_FILE
    assert state_file.exists()
    state_file.write_bytes(GARBAGE)

    done, stderr = await _call(env, home, {"paths": [target], "dry_run": False, "confirmation_token": token})
    assert done.is_error  # type: ignore[attr-defined]
    assert (home / "scratch" / "tmp.log").exists()
    warnings = [line for line in stderr.splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "was damaged" in warnings[0] and ".damaged-" in warnings[0], stderr
