"""The command line: options declared once (the settings' fields), one clear line per mistake, the sandbox's
real-account isolation, and list_files' sort arguments."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from efile_mcp.settings import OPTIONS, option

from .conftest import call_error, call_ok, child_env, run_cli

ROOT = Path(__file__).resolve().parent.parent
GOOD = {"EFILE_BASE_URL": "https://efile.example/efile", "EFILE_TOKEN": "tok-123-secret"}
FLAGGED = [opt for opt in OPTIONS if opt.flag is not None]


def one_line(proc: object) -> str:
    """The single stderr line of a start-up that failed as it should: exit 2, nothing on stdout, no traceback."""
    assert proc.returncode == 2, proc.stderr  # type: ignore[attr-defined]
    assert proc.stdout == ""  # type: ignore[attr-defined]
    lines = proc.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return str(lines[0])


# ---------------------------------------------------------------------------- options declared once


def test_every_flag_is_in_the_help_with_its_variable_and_default() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())  # argparse wraps lines
    for opt in FLAGGED:
        assert opt.flag is not None
        assert opt.flag.name in text and opt.env in text, opt.field
    assert "(EFILE_MAX_PATHS; default 10000)" in text and "(EFILE_HTTP_PORT; default 8765)" in text


#: A value each flag's setting refuses, from the flag and from the environment alike.
BAD = {
    "base_url": "efile.example", "allowed_roots": "scratch", "protected": "a/b", "max_paths": "lots",
    "log_level": "verbose", "log_format": "xml", "transport": "pigeon", "http_port": "99999",
}  # fmt: skip


@pytest.mark.parametrize("field", sorted(BAD))
@pytest.mark.parametrize("source", ["flag", "environment"])
def test_a_bad_value_names_the_variable_and_the_flag_from_one_declaration(field: str, source: str) -> None:
    opt = option(field)
    assert opt.flag is not None
    if source == "flag":
        proc = run_cli(opt.flag.name, BAD[field], env=GOOD)
    else:
        proc = run_cli(env={**GOOD, opt.env: BAD[field]})
    line = one_line(proc)
    assert line.startswith(f"efile-mcp: invalid setting {opt.env} (or {opt.flag.name}): "), line
    assert "tok-123-secret" not in line


def test_a_quarantine_without_a_grace_day_is_refused_in_one_line() -> None:
    """EFILE_QUARANTINE_DAYS=0 would let the next server start purge what was just quarantined."""
    line = one_line(run_cli(env={**GOOD, "EFILE_QUARANTINE_DAYS": "0"}))
    assert line == "efile-mcp: invalid setting EFILE_QUARANTINE_DAYS: Input should be greater than or equal to 1"


def test_an_unknown_log_level_names_the_setting_and_the_valid_values() -> None:
    line = one_line(run_cli(env={**GOOD, "EFILE_LOG_LEVEL": "verbose"}))
    assert line == (
        "efile-mcp: invalid setting EFILE_LOG_LEVEL (or --log-level): "
        "Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"
    )


def test_an_argument_mistake_is_one_line_too() -> None:
    assert one_line(run_cli("--max-paths")) == (
        "efile-mcp: argument --max-paths: expected one argument (see efile-mcp --help)"
    )
    assert "unrecognized arguments: --frobnicate" in one_line(run_cli("--frobnicate"))


def _configuration_rows() -> list[tuple[set[str], set[str]]]:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = page[: page.index("## Claude Desktop")]  # the settings and the sign-in tables
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3 or set(cells[0]) <= {"-"}:
            continue
        names = set(re.findall(r"`((?:EFILE|SCNET)_[A-Z_]+)`", cells[0]))
        flags = set(re.findall(r"`(--[a-z-]+)", cells[1]))
        if names or flags:
            rows.append((names, flags))
    return rows


def test_the_readme_configuration_tables_list_exactly_the_settings() -> None:
    rows = _configuration_rows()
    listed = [name for names, _ in rows for name in names]
    assert sorted(listed) == sorted(opt.env for opt in OPTIONS), "docs/configuration.md vs Settings"
    assert len(listed) == len(set(listed))
    flags_by_row = {name: flags for names, flags in rows for name in names}
    for opt in OPTIONS:
        expected = {opt.flag.name} if opt.flag is not None else set()
        assert flags_by_row[opt.env] == expected, opt.env


# ---------------------------------------------------------------------------- the sandbox


def test_sandbox_demo_is_refused_as_a_command(tmp_path: Path) -> None:
    proc = run_cli("--sandbox", "demo")
    assert one_line(proc) == "efile-mcp: `demo` is a command, not a directory: run `efile-mcp demo`"


def test_sandbox_demo_is_a_directory_when_one_named_demo_exists(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "demo").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "efile_mcp", "--sandbox", "demo"],
        check=False,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(EFILE_LOG_LEVEL="info"),
    )
    assert proc.returncode == 0, proc.stderr
    assert f"sandbox: {tmp_path / 'demo'} is served as /public/home/demo" in proc.stderr


@pytest.mark.parametrize("kind", ["file", "missing"])
def test_sandbox_dir_that_is_not_a_directory_is_one_line(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("not a directory\n")
    line = one_line(run_cli("--sandbox", str(target)))
    assert line.startswith(f"efile-mcp: --sandbox {target}")
    assert ("is not a directory" if kind == "file" else "no such directory") in line
    assert "really deletes files in it" in line


REAL_ACCOUNT = {
    "EFILE_BASE_URL": "https://efile.real.example/efile",
    "EFILE_TOKEN": "a-real-token-never-used",
    "SCNET_USER": "alice",
    "SCNET_ACCESS_KEY": "real-ak",
    "SCNET_SECRET_KEY": "real-sk",
    "SCNET_REGION": "real-region",
    "SCNET_AC_URL": "http://127.0.0.1:9",  # closed ports: reaching either would fail the calls below
    "SCNET_API_URL": "http://127.0.0.1:9",
    "EFILE_ALLOWED_ROOTS": "~/scratch",
}


async def test_the_sandbox_ignores_every_real_account_setting_and_says_so(tmp_path: Path) -> None:
    import tempfile

    env = child_env(**REAL_ACCOUNT, EFILE_LOG_LEVEL="info", EFILE_STATE_DIR=str(tmp_path / "state"))
    params = StdioServerParameters(command=sys.executable, args=["-m", "efile_mcp", "--sandbox"], env=env)
    from mcp.client.stdio import stdio_client

    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            status = await call_ok(client, "storage_status", {})
            plan = await call_ok(client, "remove_paths", {"paths": ["/public/home/demo/scratch/tmp.log"]})
        errlog.seek(0)
        stderr = errlog.read()
    assert status["allowed_roots"] == ["/public/home/demo/scratch"]
    assert plan["confirm_paths"] == ["/public/home/demo/scratch/tmp.log"]
    (line,) = [line for line in stderr.splitlines() if "ignoring" in line]
    assert line.startswith("efile-mcp INFO efile_mcp: sandbox: ignoring ")
    for name in (
        "EFILE_BASE_URL",
        "EFILE_TOKEN",
        "SCNET_USER",
        "SCNET_ACCESS_KEY",
        "SCNET_SECRET_KEY",
        "SCNET_REGION",
        "SCNET_AC_URL",
        "SCNET_API_URL",
    ):
        assert name in line
    assert "~ in the allowed roots is the sandbox home /public/home/demo" in line
    for secret in ("a-real-token-never-used", "real-ak", "real-sk"):
        assert secret not in stderr


def test_a_malformed_real_account_setting_does_not_stop_the_sandbox(tmp_path: Path) -> None:
    proc = run_cli(
        "--sandbox", "--base-url", "not-a-url", env={"EFILE_STATE_DIR": str(tmp_path), "EFILE_LOG_LEVEL": "info"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "sandbox: ignoring --base-url" in proc.stderr


# ---------------------------------------------------------------------------- list_files' sort arguments


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("order_by", "date", "order_by must be one of name, size, lastModifiedTime"),
        ("order_by", "SIZE", "order_by must be one of name, size, lastModifiedTime"),
        ("order", "descending", "order must be one of asc, desc"),
    ],
)
async def test_a_bad_sort_argument_is_a_tool_error_listing_the_valid_values(
    client: Client, argument: str, value: str, message: str
) -> None:
    text = await call_error(client, "list_files", {argument: value})
    assert text == f"Error executing tool list_files: {message}"


async def test_the_valid_sort_arguments_still_sort(client: Client) -> None:
    home = "/public/home/demo/scratch"
    page = await call_ok(client, "list_files", {"path": home, "order_by": "size", "order": "desc"})
    sizes = [entry["size"] for entry in page["entries"]]
    assert sizes == sorted(sizes, reverse=True)


# ---------------------------------------------------------------------------- one sandbox across processes


async def _one_call(env: dict[str, str], directory: Path, name: str, arguments: dict[str, Any]) -> tuple[Any, str]:
    """One server process for one call, as the Inspector CLI starts them: the result and the stderr."""
    import tempfile

    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "efile_mcp", "--sandbox", str(directory)], env=env
    )
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            result = await client.call_tool(name, arguments)
        errlog.seek(0)
        return result, errlog.read()


async def test_a_dry_run_token_works_in_the_next_sandbox_process_and_nothing_is_left_in_tmp(tmp_path: Path) -> None:
    from efile_mcp.sandbox import seed_sample_tree

    home = seed_sample_tree(tmp_path / "home")
    before = sorted(p.name for p in home.iterdir())
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    state = tmp_path / "xdg-state"
    env = child_env(TMPDIR=str(temporary), XDG_STATE_HOME=str(state), EFILE_LOG_LEVEL="info", EFILE_CONFIRM="token")
    target = "/public/home/demo/scratch/tmp.log"

    plan, first_log = await _one_call(env, home, "remove_paths", {"paths": [target], "mode": "delete"})
    assert not plan.is_error, plan.content
    token = plan.structured_content["confirmation_token"]
    done, _ = await _one_call(
        env, home, "remove_paths", {"paths": [target], "dry_run": False, "confirmation_token": token}
    )
    assert not done.is_error, done.content
    assert done.structured_content["summary"]["removed"] == 1
    assert not (home / "scratch" / "tmp.log").exists()
    # The same token in a third process: spent (the state store is the same sandbox's too).
    again, _ = await _one_call(
        env, home, "remove_paths", {"paths": [target], "dry_run": False, "confirmation_token": token}
    )
    assert again.is_error and "already" in " ".join(getattr(b, "text", "") for b in again.content)

    assert list(temporary.iterdir()) == []  # no temporary folders left behind, audit log or otherwise
    (private,) = (state / "efile-mcp" / "sandboxes").iterdir()
    assert private.name.startswith("home-") and (private.stat().st_mode & 0o777) == 0o700
    audit = (private / "audit.jsonl").read_text(encoding="utf-8")
    assert target in audit
    assert sorted(p.name for p in home.iterdir()) == before  # nothing of the sandbox's own inside DIR
    assert f"sandbox: audit log {private / 'audit.jsonl'}" in first_log
    assert "WARNING" not in first_log


async def test_the_sandbox_reports_a_quota_with_usage_measured_from_dir(tmp_path: Path) -> None:
    from efile_mcp.sandbox import seed_sample_tree

    home = seed_sample_tree(tmp_path / "home")
    env = child_env(XDG_STATE_HOME=str(tmp_path / "state"))
    status, _ = await _one_call(env, home, "storage_status", {})
    (quota,) = status.structured_content["quota"]
    assert "quota_error" not in status.structured_content
    assert quota["path"] == "/public/home/demo"
    assert quota["used_percent"] > 100  # the default quota: the sample home starts over it
    assert quota["limit_bytes"] == round(0.00005 * 1024**3)
    assert abs(quota["used_bytes"] - sum(p.stat().st_size for p in home.rglob("*") if p.is_file())) <= 1


async def test_an_empty_sandbox_dir_gets_the_sample_home(tmp_path: Path) -> None:
    empty = tmp_path / "try"
    empty.mkdir()
    env = child_env(XDG_STATE_HOME=str(tmp_path / "state"), EFILE_LOG_LEVEL="info")
    found, stderr = await _one_call(env, empty, "find_paths", {"path": "/public/home/demo/scratch", "name": "*.log"})
    assert not found.is_error, found.content
    assert found.structured_content["total_matches"] >= 3  # the sample's logs, to try a clean-up on
    assert (empty / "scratch" / "big-run").is_dir() and "was empty: it now holds the sample home" in stderr
