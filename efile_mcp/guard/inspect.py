"""Checking the real objects on storage, not path strings: what each path is, what is above it, what is inside it.

For every path the policy accepted:
- each component below its allowed root, the leaf included, is looked up in its parent's listing: a
  symbolic link anywhere there is refused (the storage would follow it, wherever it leads), a missing
  component or a file where a folder should be makes the path missing;
- a folder is walked (within the call's budget) for what its removal really deletes: bytes, regular
  files, the newest change; a protected name or a symbolic link anywhere inside refuses it.

Listings are shared by the whole call (`Listings`), so the cost grows with distinct folders, not paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import anyio

from ..client._groups import task_group
from ..client.walk import DirListing, Entry, Listings, WalkStats, join
from ..errors import EfileMcpError
from .insight import Totals
from .paths import PathPolicy, display
from .seen import SeenPath


@dataclass
class Budget:
    """The entries and seconds one call may spend reading folders."""

    max_entries: int
    deadline: float  # anyio.current_time() value

    def remaining_entries(self, used: int) -> int:
        return max(0, self.max_entries - used)

    def remaining_seconds(self) -> float:
        return max(0.0, self.deadline - anyio.current_time())


@dataclass
class Inspection:
    seen: dict[str, SeenPath] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    entries_read: int = 0


def components_below_root(path: str, root: str) -> list[str]:
    """`root/a/b/c` -> [`root/a`, `root/a/b`, `root/a/b/c`]: every path whose entry must be a real folder (or the leaf)."""
    rest = path[len(root) + 1 :].split("/")
    return [root + "/" + "/".join(rest[: i + 1]) for i in range(len(rest))]


def link_refusal(link: str, path: str) -> str:
    if link == path:
        return (
            f"it is a symbolic link ({display(link)}): the storage would act on wherever it points, so links are "
            "never removed through this tool; ask the person to remove it by hand if they want it gone."
        )
    return (
        f"its parent {display(link)} is a symbolic link, so the path leads wherever the link points, possibly "
        "outside the allowed roots; name the real location instead (a dry run of it shows whether it is allowed)."
    )


class Inspector:
    """`links_inside="allow"`: a folder holding symbolic links is seen like any other (a quarantine moves it
    whole, and a move never follows links; or EFILE_LINKS_INSIDE=remove says the storage removes links as
    links). Links on the way to a path, or the path itself a link, stay refused either way."""

    def __init__(
        self,
        listings: Listings,
        policy: PathPolicy,
        budget: Budget,
        links_inside: Literal["refuse", "allow"] = "refuse",
    ) -> None:
        self.listings = listings
        self.policy = policy
        self.budget = budget
        self.links_inside = links_inside
        self.entries_read = 0

    async def check(self, paths: Iterable[str], *, walk_folders: bool) -> Inspection:
        paths = list(paths)
        result = Inspection()
        chains: dict[str, list[str]] = {}
        for path in paths:
            root = self.policy.root_of(path)
            if root is None:  # the policy accepted it, so this cannot happen; refuse rather than assume
                result.refused[path] = "it is not inside an allowed root."
                continue
            chains[path] = components_below_root(path, root)
        wanted = {prefix for chain in chains.values() for prefix in chain}
        found = await self.listings.entries(wanted)
        folders: list[tuple[str, Entry]] = []
        for path, chain in chains.items():
            verdict = self._judge_chain(path, chain, found)
            if isinstance(verdict, tuple):
                kind, reason = verdict
                (result.refused if kind == "refused" else result.missing)[path] = reason
                continue
            entry = verdict
            if entry.kind == "directory" and walk_folders:
                folders.append((path, entry))
            else:
                result.seen[path] = SeenPath(
                    path,
                    entry.kind,
                    entry.size if entry.kind != "directory" else 0,
                    entry.mtime,
                    entry.size,
                    int(entry.kind == "file"),
                    entry.mtime,
                )
        if folders:
            async with task_group() as tg:
                for path, entry in folders:
                    tg.start_soon(self._size_folder, path, entry, result)
        result.entries_read = self.entries_read
        return result

    @staticmethod
    def _judge_chain(
        path: str, chain: list[str], found: dict[str, Entry | EfileMcpError | None]
    ) -> Entry | tuple[str, str]:
        for prefix in chain:
            entry = found.get(prefix)
            if isinstance(entry, EfileMcpError):
                return ("refused", f"could not check what it is ({entry}); not confirmed, try again later.")
            if entry is None:
                if prefix == path:
                    return ("missing", "does not exist (nothing to remove)")
                return ("missing", f"does not exist: its parent {display(prefix)} is not there")
            if entry.kind == "symlink":
                return ("refused", link_refusal(prefix, path))
            if prefix != path and entry.kind != "directory":
                return ("missing", f"does not exist: its parent {display(prefix)} is a {entry.kind}, not a folder")
            if prefix == path and entry.mtime is None:
                # Known only from `children` of a cut listing: nothing to tell it apart from a swapped-in folder later.
                return (
                    "refused",
                    "its parent's listing was cut, so it cannot be identified (no modification time) "
                    "and checked again at execution; name what is inside it instead.",
                )
        last = found[chain[-1]]
        assert isinstance(last, Entry)
        return last

    async def _size_folder(self, path: str, entry: Entry, result: Inspection) -> None:
        tree = Totals()
        tree.see(entry.mtime)
        protected: list[str] = []
        links: list[str] = []

        def on_dir(folder: str, depth: int, listing: DirListing) -> None:
            for child in listing.entries.values():
                tree.count(child)
                if self.policy.is_protected_name(child.name):
                    protected.append(join(folder, child.name))
                if child.kind == "symlink":
                    links.append(join(folder, child.name))

        stats = await self.listings.walk(
            path,
            on_dir,
            max_entries=self.budget.remaining_entries(self.entries_read),
            max_seconds=self.budget.remaining_seconds(),
            stats=WalkStats(),
        )
        self.entries_read += stats.entries_seen
        if protected:
            result.refused[path] = (
                f"it holds {display(protected[0])}, a protected name"
                + (f" (and {len(protected) - 1} more)" if len(protected) > 1 else "")
                + ": removing the folder would remove it too. Name the other contents individually instead."
            )
            return
        if links and self.links_inside == "refuse":
            result.refused[path] = (
                f"it holds the symbolic link {display(links[0])}"
                + (f" (and {len(links) - 1} more)" if len(links) > 1 else "")
                + ": efile-mcp does not remove folders with links inside for good (the storage may follow them). "
                "Two ways out: remove it with mode='quarantine' (the folder is moved whole, links as links, and "
                "can be restored), or, if the storage removes links as links (as `rm -rf` does), the person or "
                "their admin sets EFILE_LINKS_INSIDE=remove."
            )
            return
        if stats.unreadable:
            where = stats.unreadable[0]
            inside = "the folder" if where.path == path else f"{display(where.path)} inside it"
            result.refused[path] = (
                f"could not read {inside} ({where.reason}): what it holds cannot be vouched for, so "
                "it is not confirmed; try again later, or name the readable parts."
            )
            return
        if not stats.complete:
            # What was not read may hold a protected name or a link: a folder is removed only when seen whole.
            why = (
                "it holds more than this call may read (the walk budget, EFILE_WALK_MAX_ENTRIES / "
                "EFILE_WALK_MAX_SECONDS)"
                if stats.stopped
                else "the server would not list some folder in it whole (cut or repeated pages)"
            )
            result.refused[path] = (
                f"it could not be read whole: {why}, after {stats.entries_seen} entries. "
                "Unread contents cannot be vouched for: remove its sub-folders one by one instead."
            )
            return
        result.seen[path] = SeenPath(
            path, "directory", tree.size, entry.mtime, entry.size, tree.files, tree.newest, complete=stats.complete
        )
