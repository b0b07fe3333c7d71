"""Allowed roots looked up on the storage: a missing, mistyped or file root, or a path of this machine (an
unquoted ~ expanded by the shell), is one WARNING line at start and a roots_problems entry saying what to write."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from efile_mcp.sandbox import seed_sample_tree

from .conftest import call_ok, child_env

LOCAL_HOME = "/home/alice"  # this machine's home, as the child process sees it ($HOME)


async def _status(tmp_path: Path, roots: str) -> tuple[dict[str, Any], str]:
    home = seed_sample_tree(tmp_path / "home")
    env = child_env(
        HOME=LOCAL_HOME, XDG_STATE_HOME=str(tmp_path / "state"), EFILE_ALLOWED_ROOTS=roots, EFILE_LOG_LEVEL="info"
    )
    params = StdioServerParameters(command=sys.executable, args=["-m", "efile_mcp", "--sandbox", str(home)], env=env)
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            status = await call_ok(client, "storage_status", {})
            await call_ok(client, "storage_status", {})  # asked again: no second WARNING
        errlog.seek(0)
        return status, errlog.read()


async def test_wrong_roots_are_named_at_start_with_what_to_write_instead(tmp_path: Path) -> None:
    roots = f"{LOCAL_HOME}/scratch,~/scratc,~/notes.txt,~/projects"
    status, stderr = await _status(tmp_path, roots)
    problems = {p["root"]: p for p in status["roots_problems"]}
    assert set(problems) == {
        f"{LOCAL_HOME}/scratch",
        "/public/home/demo/scratc",
        "/public/home/demo/notes.txt",
    }  # ~/projects exists: no problem
    local = problems[f"{LOCAL_HOME}/scratch"]
    assert (
        local["reason"].startswith(("does not exist", "cannot be read")) and "path of this machine" in local["reason"]
    )
    assert "unquoted ~" in local["reason"] and local["write_instead"] == "'~/scratch'"
    typo = problems["/public/home/demo/scratc"]
    assert typo["reason"] == "does not exist" and typo["write_instead"] == "'~/scratch'"
    assert problems["/public/home/demo/notes.txt"]["reason"] == "is a file, not a folder"

    warnings = [line for line in stderr.splitlines() if " WARNING " in line]
    assert len(warnings) == 3, stderr  # one line per root, once, not again at the second storage_status
    assert all("EFILE_ALLOWED_ROOTS" in line for line in warnings)
    (local_line,) = [line for line in warnings if LOCAL_HOME in line]
    assert "write '~/scratch' instead" in local_line


async def test_good_roots_give_no_problems_and_no_warning(tmp_path: Path) -> None:
    status, stderr = await _status(tmp_path, "~/scratch,~/数据")
    assert "roots_problems" not in status
    assert " WARNING " not in stderr


async def test_with_sign_in_the_roots_are_looked_up_at_the_first_storage_status(
    sandbox: Any, audit_path: Path, caplog: Any
) -> None:
    """Sign-in waits for the first call (start-up stays offline): that call names a mistyped root."""
    import logging

    from efile_mcp.server import build_server

    from .test_signin import signin_settings

    settings = signin_settings(sandbox, audit_path, allowed_roots=("~/scratc", "~/projects"))
    with caplog.at_level(logging.WARNING):
        async with Client(build_server(settings)) as client:
            assert sandbox.sandbox.request_counts["file/list"] == 0  # nothing before the first call
            status = await call_ok(client, "storage_status", {})
    (problem,) = status["roots_problems"]
    assert problem == {
        "root": f"{sandbox.home}/scratc",
        "reason": "does not exist",
        "write_instead": "'~/scratch'",
    }
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{sandbox.home}/scratc" in line and "'~/scratch'" in line
