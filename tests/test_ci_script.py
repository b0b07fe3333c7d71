""".ci/run on a fresh Debian machine (nothing but Python and apt): it installs every system package the suite
uses, idempotently, and runs lint, the format check and the suite with every "required here" switch on.

No container engine runs here, so the script is read line by line against what the tests use: every tool a
test looks up (`shutil.which`, the bundle test's `tool(...)`) maps to a Debian package in the script's
SYSTEM_PACKAGES, and every EFILE_REQUIRE_* switch a test reads is exported. A new tool in a test fails this
test until the script installs it. Where Docker runs, the script also runs for real in debian:bookworm.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "run"
TESTS = ROOT / "tests"

#: Each tool the tests look up, and the Debian package that brings it (None: not a system package).
TOOL_PACKAGES: dict[str, str | None] = {
    "git": "git",
    "npx": "npm",  # Debian's npm package ships npx; Node.js itself is "nodejs"
    "npm": "npm",
    "node": "nodejs",
    "redis-server": "redis-server",
    "chromium": "chromium",
    "uv": None,  # a test extra (pip)
    "ruff": None,  # a test extra (pip)
    "setpriv": None,  # util-linux: Essential in Debian, on every machine
    "docker": None,  # optional: only the container run below, skipped without an engine
}
#: Packages the script needs for itself: HTTPS to the registries, and the venv it makes.
SCRIPT_PACKAGES = {"ca-certificates", "python3-venv", "nodejs", "npm"}


def script_lines() -> list[str]:
    """The script's commands: comments and blank lines dropped, continuation lines joined."""
    text = SCRIPT.read_text(encoding="utf-8").replace("\\\n", " ")
    return [
        line.split(" #")[0].strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def system_packages() -> list[str]:
    text = SCRIPT.read_text(encoding="utf-8")
    match = re.search(r"^SYSTEM_PACKAGES=\((.*?)^\)", text, re.S | re.M)
    assert match, "SYSTEM_PACKAGES=( ... ) not found in .ci/run"
    return [line.split("#")[0].strip() for line in match.group(1).splitlines() if line.split("#")[0].strip()]


def tools_the_tests_use() -> set[str]:
    found: set[str] = set()
    for path in TESTS.rglob("*.py"):  # tests/ and tests/e2e/
        text = path.read_text(encoding="utf-8")
        found |= set(re.findall(r"""shutil\.which\(\s*["']([\w.-]+)["']""", text))
        found |= set(re.findall(r"""\btool\(\s*["']([\w.-]+)["']\)""", text))
    return found


def switches_the_tests_read() -> set[str]:
    found: set[str] = set()
    for path in [*TESTS.rglob("*.py")]:
        found |= set(re.findall(r"\b(EFILE_REQUIRE_[A-Z_]+)\b", path.read_text(encoding="utf-8")))
    return found


def test_every_tool_a_test_uses_is_installed_by_the_script() -> None:
    packages = system_packages()
    assert len(packages) == len(set(packages))
    tools = tools_the_tests_use()
    assert {"git", "redis-server", "chromium", "npx"} <= tools  # the finder still finds what it should
    unknown = tools - TOOL_PACKAGES.keys()
    assert not unknown, f"tests use {sorted(unknown)}: add them to TOOL_PACKAGES and to SYSTEM_PACKAGES in .ci/run"
    needed = {TOOL_PACKAGES[tool] for tool in tools} - {None} | SCRIPT_PACKAGES
    assert needed <= set(packages), f".ci/run does not install {sorted(needed - set(packages))}"


def test_packages_are_installed_idempotently_with_one_update() -> None:
    lines = script_lines()
    updates = [i for i, line in enumerate(lines) if "apt-get update" in line]
    installs = [i for i, line in enumerate(lines) if "apt-get install" in line]
    assert len(updates) == 1 and len(installs) == 1 and updates[0] < installs[0]
    install = lines[installs[0]]
    assert " -y" in install and '"${missing[@]}"' in install and "DEBIAN_FRONTEND=noninteractive" in install
    # Only what is missing is installed, and apt is not even asked when nothing is.
    assert any("dpkg-query" in line for line in lines) and any('missing+=("$package")' in line for line in lines)
    guard = next(i for i, line in enumerate(lines) if line.startswith('if [ "${#missing[@]}" -gt 0 ]'))
    assert guard < updates[0]
    # Before anything that needs the packages.
    first_use = min(i for i, line in enumerate(lines) if line.startswith(("npm ", "python3 -m venv")))
    assert installs[0] < first_use


def test_every_required_switch_is_set_and_lint_runs_before_the_suite() -> None:
    lines = script_lines()
    exported = {m for line in lines for m in re.findall(r"^export (EFILE_REQUIRE_[A-Z_]+)=1$", line)}
    read = switches_the_tests_read() - {"EFILE_REQUIRE_"}
    assert read <= exported, f".ci/run does not set {sorted(read - exported)}"
    assert "EFILE_REQUIRE_BROWSER" in exported
    assert lines[0] == "set -euo pipefail"
    ruff_check = lines.index(".venv/bin/ruff check .")
    ruff_format = lines.index(".venv/bin/ruff format --check .")
    # The suite is the last command and its exit code is the script's: nothing after it, nothing masking it.
    assert lines[-1] == "exec .venv/bin/pytest -q"
    assert ruff_check < len(lines) - 1 and ruff_format < len(lines) - 1
    assert not any("|| true" in line or "set +e" in line for line in lines)


def test_the_script_is_valid_bash_and_executable() -> None:
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert os.access(SCRIPT, os.X_OK)


def _docker_engine() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "info"], capture_output=True, timeout=30)
    return docker if probe.returncode == 0 else None


@pytest.mark.timeout(3600)
@pytest.mark.skipif(_docker_engine() is None, reason="no container engine: the script is checked line by line above")
def test_the_script_passes_in_a_fresh_debian_container(tmp_path: Path) -> None:
    docker = _docker_engine()
    assert docker is not None
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM debian:bookworm\n"
        "RUN apt-get update -q && apt-get install -y -q --no-install-recommends python3 && rm -rf /var/lib/apt/lists\n"
        'COPY . /src\nWORKDIR /src\nCMD [".ci/run"]\n',
        encoding="utf-8",
    )
    tag = "efile-mcp-ci-test"
    build = subprocess.run([docker, "build", "-f", str(dockerfile), "-t", tag, str(ROOT)], timeout=1800)
    assert build.returncode == 0
    run = subprocess.run([docker, "run", "--rm", tag], timeout=3600)
    assert run.returncode == 0
