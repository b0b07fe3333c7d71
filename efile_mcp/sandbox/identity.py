"""Who a `--sandbox DIR` is, the same in every process: its token, confirmation secret and private folder.

An MCP client may start a new server for every call (the Inspector CLI over stdio does): a dry run in one
process and its execution in the next must meet the same sandbox, the same secret and the same state store,
or the token is refused as "issued for another configuration". So they are kept, per DIR, in
`<state dir>/sandboxes/<name>-<digest of DIR>/` (0700; `identity.json` 0600), beside the sandbox's state
store and audit log. Never inside DIR, which the sandbox serves and may delete, and never in the shared
temporary directory, where every start used to leave two folders (one holding the audit log of real deletions).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

IDENTITY_FILE = "identity.json"


def _default_state_dir() -> Path:
    from platformdirs import user_state_path

    return user_state_path("efile-mcp", appauthor=False)


def identity_directory(root: Path, state_dir: Path | None = None) -> Path:
    """The private folder of the sandbox over `root` (absolute): readable name, digest of the whole path."""
    digest = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", root.name)[:40] or "root"
    return (state_dir if state_dir is not None else _default_state_dir()) / "sandboxes" / f"{name}-{digest}"


@dataclass(frozen=True)
class SandboxIdentity:
    directory: Path
    token: str
    confirm_secret: str

    def __repr__(self) -> str:  # secrets stay out of reprs and logs
        return f"SandboxIdentity(directory={str(self.directory)!r})"

    @classmethod
    def fresh(cls, directory: Path) -> SandboxIdentity:
        """A one-off identity (the sample tree in a temporary folder lives for one process)."""
        return cls(directory, secrets.token_hex(16), secrets.token_hex(32))

    @classmethod
    def for_directory(cls, root: Path, state_dir: Path | None = None) -> SandboxIdentity:
        """The identity of the sandbox over `root`, made by the first process and read by every later one."""
        directory = identity_directory(root, state_dir)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / IDENTITY_FILE
        if not path.exists():
            made = {"root": str(root), "token": secrets.token_hex(16), "confirm_secret": secrets.token_hex(32)}
            draft = directory / f".{IDENTITY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(made, out)
                out.flush()
                os.fsync(out.fileno())
            # link, not rename: two processes starting at once keep the first one's identity, not the last.
            with contextlib.suppress(FileExistsError):
                os.link(draft, path)
            draft.unlink()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(directory, str(data["token"]), str(data["confirm_secret"]))
        except (OSError, ValueError, KeyError, TypeError):
            # Unreadable: start a new identity (tokens of the old one are refused, which is safe).
            path.unlink(missing_ok=True)
            return cls.for_directory(root, state_dir)
