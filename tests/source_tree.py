"""A throwaway clone of this repository, as a user's clone looks after a while: the project's files
committed, plus a virtual environment under an unusual name, build output and caches lying around.

The packaging and bundle tests build from such a clone, so what they check does not depend on how the
developer's (or CI's) own virtual environment is named.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Files that a clone may hold but git does not track, and that no build or bundle may carry.
DECOYS = (
    ".v/pyvenv.cfg",
    ".v/lib/python3.12/site-packages/decoy/__init__.py",
    ".v/lib/python3.12/site-packages/decoy/big.bin",
    "venv-old/pyvenv.cfg",
    "myenv/pyvenv.cfg",
    "myenv/lib/python3.12/site-packages/decoy.py",
    "efile_mcp.egg-info/PKG-INFO",
    ".mypy_cache/3.12/cache.db",
    "build/lib/efile_mcp/stale.py",
    "dist/efile_mcp-0.0.0-py3-none-any.whl",
    "efile_mcp/__pycache__/stale.cpython-312.pyc",
    ".pytest_cache/README.md",
)
DECOY_BYTES = 2_000_000  # big.bin: a bundle or sdist that carries it is plainly too big


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def project_files() -> list[str]:
    """What a clone of the committed work would hold: the tracked files, plus new ones not yet committed
    (so a developer's work in progress is what gets tested); nothing git ignores."""
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    return sorted(name for name in set(listed.split("\0")) if name and (ROOT / name).is_file())


def clone_with_decoys(dest: Path) -> Path:
    """A git repository at `dest` with the project's files committed and the DECOYS left untracked."""
    for name in project_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    git("init", "-q", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "-q", "-m", "clone", cwd=dest)
    for name in DECOYS:
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("big.bin"):
            path.write_bytes(os.urandom(DECOY_BYTES))
        elif name.endswith("pyvenv.cfg"):
            path.write_text("home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.12.0\n")
        else:
            path.write_text("# not part of the project\n")
    return dest


def export(clone: Path, dest: Path) -> Path:
    """The README's clean export: what git tracks at HEAD, nothing else (`git archive HEAD | tar -x`)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=clone, check=True, capture_output=True, timeout=60)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=60)
    return dest
