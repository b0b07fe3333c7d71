"""Every command in the README and in docs/ is run by a test.

Each shell block (```sh) of README.md and docs/*.md is split into commands, and every command must match
exactly one entry of COVERAGE: either it runs here (`HERE`, below, with `.venv/bin/` meaning this
interpreter's and scratch paths moved into the test's folder), or it names the tests that run it. A new
command in the docs fails this test until it is covered; an entry no command matches any more fails too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
INSPECTOR = "@modelcontextprotocol/inspector@0.17.2"

HERE = "run here"
INSPECTOR_FLOW = rf"npx -y {re.escape(INSPECTOR)} --cli \.venv/bin/efile-mcp --sandbox /tmp/efile-try .*"
SANDBOX_SERVE = r"mkdir -p /tmp/efile-try && \.venv/bin/efile-mcp --sandbox /tmp/efile-try .*< /dev/null"
SANDBOX_API = r"d=\$\(mktemp -d\) && timeout 3 \.venv/bin/python -m efile_mcp\.sandbox\.serve .*"
DEV_SETUP = r"python3 -m venv \.venv && \.venv/bin/pip install -q -e '\.\[test\]'"
BENCHMARKS = r"\.venv/bin/python benchmarks/(run|bench_\w+)\.py.*"
REDIS = r"redis-server --appendonly yes --appendfsync always --dir /data"
#: (pattern of a documented command, how it is run: HERE or the tests that run it, as path::name)
COVERAGE: list[tuple[str, tuple[str, ...]]] = [
    # README: Quick start
    (
        r"python3 -m venv \.venv && \.venv/bin/pip install -q -e \. && \.venv/bin/efile-mcp demo",
        (
            "tests/test_packaging.py::test_the_demo_runs_from_the_installed_wheel_alone",
            "tests/e2e/test_demo.py::test_the_demo_runs_end_to_end_and_tells_the_story",
        ),
    ),
    (
        r"python3 -m venv \.venv && \.venv/bin/pip install -q -e '\.\[test\]' && \.venv/bin/pytest -q",
        ("tests/test_readme_commands.py::test_the_readme_test_command_is_what_ci_runs",),
    ),
    (r"\.ci/run", ("tests/test_ci_script.py::test_every_tool_a_test_uses_is_installed_by_the_script",)),
    (r"mkdir -p /tmp/efile-try", (HERE,)),
    (INSPECTOR_FLOW, (HERE,)),
    # README: Install
    (
        r'd=\$\(mktemp -d\) && git archive HEAD \| tar -x -C "\$d" && npx -y @anthropic-ai/mcpb@2\.1\.2 pack .*',
        ("tests/test_bundle.py::test_bundle_holds_exactly_the_tracked_package_files_whatever_the_venv_is_called",),
    ),
    (r"claude mcp add .*", ("tests/test_readme_commands.py::test_the_claude_code_commands_start_the_product",)),
    # docs/serving.md: the container
    (
        r"docker build -t efile-mcp \.",
        (
            "tests/test_packaging.py::test_the_image_runs_the_documented_command_as_a_non_root_user_with_no_secret_inside",
        ),
    ),
    (
        r"docker run .* efile-mcp",
        ("tests/test_packaging.py::test_the_image_command_needs_allowed_hosts_and_the_health_check_needs_no_token",),
    ),
    (
        r"cp \.env\.example \.env|docker compose (up -d --build|ps)",
        (
            "tests/test_packaging.py::test_compose_runs_two_replicas_behind_one_port_sharing_redis_and_secrets_from_the_environment",
        ),
    ),
    # docs/sandbox.md
    (SANDBOX_SERVE, (HERE,)),
    (SANDBOX_API, (HERE,)),
    # docs/CONTRIBUTING.md
    (
        r"EFILE_UPDATE_SNAPSHOTS=1 \.venv/bin/pytest -q tests/test_tool_schemas\.py",
        ("tests/test_tool_schemas.py::test_published_tools_match_the_reviewed_snapshot",),
    ),
    (
        r"\.venv/bin/python -m efile_mcp\.tools\.registry --write",
        ("tests/test_registry.py::test_the_script_writes_what_the_tests_compare",),
    ),
    (DEV_SETUP, (HERE,)),
    (r"\.venv/bin/ruff check \. && \.venv/bin/ruff format --check \.", ("tests/test_style.py::test_ruff_passes",)),
    (r"\.venv/bin/mypy", ("tests/test_types.py::test_mypy_strict_passes_on_the_package",)),
    (r"\.venv/bin/lint-imports", ("tests/test_architecture.py::test_import_contracts_hold",)),
    (
        r"\.venv/bin/pytest -q.*",
        ("tests/test_ci_script.py::test_every_required_switch_is_set_and_lint_runs_before_the_suite",),
    ),
    (BENCHMARKS, (HERE,)),
    # docs/deployment.md
    (REDIS, (HERE,)),
]


def documented_commands() -> list[tuple[str, str]]:
    """(page, command) for every command of every ```sh block: continuations joined, comments dropped."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                command = re.sub(r"\s+#\s.*$", "", line).strip()
                command = re.sub(r"\s+", " ", command)
                if command and not command.startswith("#"):
                    found.append((page.relative_to(ROOT).as_posix(), command))
    return found


def covering(command: str) -> list[int]:
    return [i for i, (pattern, _) in enumerate(COVERAGE) if re.fullmatch(pattern, command)]


def test_every_documented_command_is_covered_once_and_every_entry_is_used() -> None:
    commands = documented_commands()
    assert len(commands) > 15  # the finder finds the blocks
    used: set[int] = set()
    for page, command in commands:
        matches = covering(command)
        assert len(matches) == 1, f"{page}: {command!r} is covered by {len(matches)} entries of COVERAGE"
        used |= set(matches)
    assert used == set(range(len(COVERAGE))), [COVERAGE[i][0] for i in set(range(len(COVERAGE))) - used]


def test_the_tests_named_as_running_a_command_exist() -> None:
    for _, runs in COVERAGE:
        for where in runs:
            if where == HERE:
                continue
            path, name = where.split("::")
            source = (ROOT / path).read_text(encoding="utf-8")
            assert re.search(rf"^(async )?def {name}\(", source, re.M), where


def test_the_readme_test_command_is_what_ci_runs() -> None:
    """The README's test command, step by step, is in .ci/run (which tests/test_ci_script.py checks)."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for step in ("python3 -m venv .venv", ".venv/bin/pip install -q -e '.[test]'", "exec .venv/bin/pytest -q"):
        assert step in script, step


def test_the_claude_code_commands_start_the_product() -> None:
    """`claude` is not installed here: its commands are read as it reads them. Stdio: the settings after -e
    are real settings and the server command after -- is the published one; HTTP: /mcp with a bearer header."""
    from efile_mcp.settings import OPTIONS

    settings = {opt.env for opt in OPTIONS}
    commands = [c for _, c in documented_commands() if c.startswith("claude mcp add ")]
    assert len(commands) >= 2
    for command in commands:
        if "--transport http" in command:
            assert re.search(r" http://127\.0\.0\.1:8765/mcp ", command)
            assert re.search(r'--header "Authorization: Bearer [^"]+"$', command)
            continue
        names = re.findall(r"-e (\w+)=", command)
        assert names and set(names) <= settings, names
        server = command.split(" -- ", 1)[1]
        assert server == "uvx --from git+https://github.com/efile-mcp/efile-mcp efile-mcp"


# ---------------------------------------------------------------------------- the commands run here


def _run(
    command: str, tmp_path: Path, env: dict[str, str], *, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """A documented command, with `.venv/bin/` this interpreter's and /tmp/efile-try in the test's folder."""
    command = command.replace(".venv/bin/", f"{BIN}/").replace("/tmp/efile-try", str(tmp_path / "efile-try"))
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path
    )


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    from .conftest import child_env

    return child_env(XDG_STATE_HOME=str(tmp_path / "state"), **extra)


def _npx() -> str:
    npx = shutil.which("npx")
    if npx is None:
        if os.environ.get("EFILE_REQUIRE_BUNDLE_TOOLS"):
            pytest.fail("npx is required here (EFILE_REQUIRE_BUNDLE_TOOLS is set) but not found")
        pytest.skip("npx (Node.js) is not installed: the Inspector CLI cannot run")
    return npx


def _commands(pattern: str) -> list[str]:
    return [c for _, c in documented_commands() if re.fullmatch(pattern, c)]


@pytest.mark.timeout(600)
def test_the_quick_start_inspector_flow_deletes_by_the_dry_runs_token_across_processes(tmp_path: Path) -> None:
    _npx()
    env = _env(tmp_path)
    (mkdir,) = _commands(r"mkdir -p /tmp/efile-try")
    dry_run, execute = _commands(INSPECTOR_FLOW)
    assert _run(mkdir, tmp_path, env).returncode == 0
    first = _run(dry_run, tmp_path, env)
    assert first.returncode == 0, first.stderr
    plan = json.loads(first.stdout)
    assert not plan["isError"] and plan["structuredContent"]["summary"]["would_remove"] == 1
    token = plan["structuredContent"]["confirmation_token"]
    second = _run(execute.replace("<the dry run's confirmation_token>", token), tmp_path, env)
    assert second.returncode == 0, second.stderr
    done = json.loads(second.stdout)
    assert not done["isError"], done
    summary = done["structuredContent"]["summary"]
    assert summary.get("quarantined", 0) + summary.get("removed", 0) == 1
    assert not (tmp_path / "efile-try" / "scratch" / "tmp.log").exists()


def test_the_sandbox_page_commands_run(tmp_path: Path) -> None:
    env = _env(tmp_path, EFILE_LOG_LEVEL="info")
    (serve,) = _commands(SANDBOX_SERVE)
    proc = _run(serve, tmp_path, env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "is served as /public/home/demo" in proc.stderr and "sandbox: audit log" in proc.stderr
    assert (tmp_path / "efile-try" / "scratch").is_dir()  # an empty DIR got the sample home
    (api,) = _commands(SANDBOX_API)
    proc = _run(api, tmp_path, env, timeout=60)
    assert proc.returncode == 0, proc.stderr  # it served until `timeout` stopped it (124)
    assert "efile sandbox serving" in proc.stderr


def test_the_contributing_setup_and_benchmark_commands_run(tmp_path: Path) -> None:
    """The setup makes a venv (here without installing: the suite runs in one already); the benchmarks take
    minutes, so here their documented options are checked against the script's own --help."""
    (setup,) = _commands(DEV_SETUP)
    assert setup.startswith("python3 -m venv .venv && ")
    venv = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / ".venv")], timeout=120)
    assert venv.returncode == 0
    for command in _commands(BENCHMARKS):
        script = re.search(r"benchmarks/\w+\.py", command)
        assert script is not None
        help_text = subprocess.run(
            [sys.executable, str(ROOT / script.group()), "--help"], capture_output=True, text=True, timeout=60
        )
        assert help_text.returncode == 0, help_text.stderr
        for option in re.findall(r"(--[a-z-]+)", command):
            assert option in help_text.stdout, (command, option)
        for value in re.findall(r"--(?:only|scale) (\S+)", command):
            assert value in help_text.stdout, (command, value)


def test_the_deployment_redis_command_starts_a_persistent_redis(tmp_path: Path) -> None:
    from .redis_server import free_port, redis_server_binary

    redis = redis_server_binary()
    (command,) = _commands(REDIS)
    port = free_port()
    args = [redis, *command.split()[1:]]
    args[args.index("/data")] = str(tmp_path)
    proc = subprocess.Popen([*args, "--port", str(port), "--save", ""], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"CONFIG GET appendfsync\r\n")
                    answer = sock.recv(200)
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)
        assert b"always" in answer
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.timeout(300)
def test_the_troubleshooting_inspector_command_reaches_an_http_server_with_its_token(tmp_path: Path) -> None:
    """The README's fix for "the Inspector shows an OAuth error": the same command, against a real HTTP server
    whose generated token is in the default place (~ is the test's home)."""
    from .conftest import child_env
    from .redis_server import free_port

    _npx()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (command,) = re.findall(rf"`(npx -y {re.escape(INSPECTOR)} --cli http://[^`]+)`", readme)
    home = tmp_path / "home"
    home.mkdir()
    # A sandbox keeps its state in a temporary folder unless told: here, the default state directory of ~.
    default_state = home / ".local" / "state" / "efile-mcp"
    env = {k: v for k, v in child_env(HOME=str(home), EFILE_STATE_DIR=str(default_state)).items()}
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "efile-mcp"), "--sandbox", "--transport", "http", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        token_file = default_state / "http-token"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the HTTP server did not start"
                time.sleep(0.1)
        assert token_file.exists()
        proc = subprocess.run(
            ["bash", "-c", command.replace(":8765/", f":{port}/")],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        names = {tool["name"] for tool in json.loads(proc.stdout)["tools"]}
        assert {"storage_status", "remove_paths"} <= names
    finally:
        server.terminate()
        server.wait(timeout=30)
