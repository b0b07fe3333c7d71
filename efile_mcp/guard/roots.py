"""The allowed roots checked against the storage: a root that is not there is a mistake, not a policy.

`EFILE_ALLOWED_ROOTS=~/scratch` typed unquoted in a shell becomes this machine's home plus `/scratch`
(`/home/alice/scratch`); a typo (`~/scratc`) is a well-formed path too. Either way every dry run would later
be refused "not inside any allowed root", with no hint why. So each root is looked up once credentials
allow (at start-up with a token or the sandbox; with sign-in, at the first storage_status): a root that does
not exist, is not a folder, or cannot be read gives one WARNING line and a `roots_problems` entry in
storage_status saying what to write instead. A root that cannot be checked (the network, a permission) is
not reported: that is not the person's mistake.

A root is looked up by listing it (the API's `file/exist` is reported unreliable); a missing one's parent
is listed for the names a typo may have meant.
"""

from __future__ import annotations

import difflib
import logging
import os
import posixpath
from collections.abc import Sequence

from ..client import EfileApi
from ..errors import ApiError, EfileMcpError, NotFoundError
from ..models.results import RootProblem

log = logging.getLogger("efile_mcp.guard")

#: The API's answers for a parent the account may not read, and for a parent that is a file.
PERMISSION_DENIED = "911030"
NOT_A_FOLDER = "911022"
#: Entries of a parent read to find a root (and the names a typo may have meant).
_PARENT_PAGE = 1000


def local_home() -> str | None:
    """This machine's home directory, as a shell would have expanded an unquoted `~`."""
    home = os.path.expanduser("~")
    return home.rstrip("/") if home and home != "~" and home != "/" else None


def _quoted(path: str) -> str:
    return "'" + path.replace("'", "'\\''") + "'"


def _tilde(path: str, home: str | None) -> str:
    """`path` written with `~` for the home, as EFILE_ALLOWED_ROOTS takes it."""
    if home and (path == home or path.startswith(home.rstrip("/") + "/")):
        return "~" + path[len(home.rstrip("/")) :]
    return path


class RootsCheck:
    """Looks each root up once (per process), reports problems, logs each one as a WARNING once."""

    def __init__(self, api: EfileApi, *, local_home_dir: str | None = None) -> None:
        self._api = api
        self._local_home = local_home_dir if local_home_dir is not None else local_home()
        self._result: list[RootProblem] | None = None

    async def problems(self, roots: Sequence[str], home: str | None) -> list[RootProblem]:
        if self._result is not None:
            return self._result
        found: list[RootProblem] = []
        checked_all = True
        for root in roots:
            try:
                problem = await self._check(root, home)
            except EfileMcpError as exc:
                checked_all = False  # unreachable, refused, …: not the root's fault; try again next time
                log.info("allowed root %s could not be checked: %s", root, exc)
                continue
            if problem is not None:
                found.append(problem)
        for problem in found:
            log.warning(
                "allowed root %s %s: write %s instead (EFILE_ALLOWED_ROOTS or --allowed-root; until then a "
                "removal below it is refused)",
                problem.root,
                problem.reason,
                problem.write_instead,
            )
        if checked_all:
            self._result = found
        return found

    async def _check(self, root: str, home: str | None) -> RootProblem | None:
        parent, name = posixpath.split(root.rstrip("/"))
        parent = parent or "/"
        local = self._local_home
        on_this_machine = bool(
            local and (root == local or root.startswith(local + "/")) and not (home and root.startswith(home))
        )
        try:
            await self._api.list_dir(root, start=0, limit=1)
            return None  # a folder this account can read
        except NotFoundError:
            reason = "does not exist"
        except ApiError as exc:
            if exc.code == NOT_A_FOLDER:
                reason = "is a file, not a folder"
            elif exc.code == PERMISSION_DENIED:
                reason = "cannot be read by this account"
            else:
                raise
        close: list[str] = []
        try:  # the names a typo may have meant (best effort: the parent may be unreadable too)
            page = await self._api.list_dir(parent, start=0, limit=_PARENT_PAGE, order_by="name", order="asc")
            folders = [e.name for e in page.file_list if e.name and e.kind == "directory"]
            close = difflib.get_close_matches(name, folders, n=1)
        except EfileMcpError:
            pass
        return self._problem(root, home, reason, on_this_machine, close)

    def _problem(
        self, root: str, home: str | None, reason: str, on_this_machine: bool, close: list[str]
    ) -> RootProblem:
        if on_this_machine:
            assert self._local_home is not None
            rest = root[len(self._local_home) :]
            reason += (
                f" on the storage; it looks like a path of this machine (its home {self._local_home}): an unquoted "
                "~ is expanded by the shell before efile-mcp sees it"
            )
            suggestion = _quoted("~" + rest)
        elif close:
            parent = posixpath.dirname(root.rstrip("/")) or "/"
            suggestion = _quoted(_tilde(posixpath.join(parent, close[0]), home))
        elif home and not (root == home or root.startswith(home.rstrip("/") + "/")):
            reason += f"; it is outside your home {home}"
            suggestion = "a folder in your home, quoted, e.g. " + _quoted("~/scratch")
        else:
            suggestion = "a folder that exists, quoted, e.g. " + _quoted("~/scratch")
        return RootProblem(root=root, reason=reason, write_instead=suggestion)
