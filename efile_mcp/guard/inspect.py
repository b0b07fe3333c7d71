"""Checking the real objects on storage, not path strings: what each path is, what is above it, what is inside it.

For every path the policy accepted:
- each component below its allowed root, the leaf included, is looked up in its parent's listing: a
  symbolic link anywhere there is refused (the storage would follow it, wherever it leads), a missing
  component or a file where a folder should be makes the path missing;
- a folder is walked (within the call's budget) for what its removal really deletes: bytes, regular
  files, the newest change; a protected name or a symbolic link anywhere inside refuses it.

Listings are shared by the whole call (`Listings`), so the cost grows with distinct folders, not paths; and
components are looked up one level at a time, so a missing one ends its chain: nothing below it is asked for,
whatever the path's depth.

A folder's walk also computes its fingerprint: a hash over every entry of its tree (path below the folder,
type, size, mtime), summed as the pages arrive. Execution compares it: a folder whose contents were swapped
for others with the same sizes and times (`rsync -a`, `tar x`) is `changed`.

What a walk keeps does not grow with the tree: the first protected name and the first symbolic link found,
and how many; and a folder whose answer is already a refusal (a protected name, or a link where links are
refused) is not read further.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..client._groups import task_group
from ..client.walk import ClosedDir, Entry, Listings, Totals, TreeWalk, WalkLimits, join
from ..errors import EfileMcpError
from .paths import PathPolicy, display, fold_name
from .seen import SeenPath


@dataclass
class Inspection:
    seen: dict[str, SeenPath] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    entries_read: int = 0
    #: Folders whose walk stopped at the call's budget (also in `refused`, with why): pass them back as
    #: `Inspector(resume=...)` in a later call (after `TreeWalk.to_json` / the state store's save_walk) and
    #: their walks read on from where they stopped, never from the start.
    unfinished: dict[str, TreeWalk] = field(default_factory=dict)
    #: Folders whose tree holds entries listed without a time or a size, or of another kind: what they hold is
    #: removed with them, but whether they are under a size or older than an age cannot be told.
    uncertain: set[str] = field(default_factory=set)


def components_below_root(path: str, root: str) -> list[str]:
    """`root/a/b/c` -> [`root/a`, `root/a/b`, `root/a/b/c`]: every path whose entry must be a real folder (or the leaf)."""
    rest = path[len(root) + 1 :].split("/")
    return [root + "/" + "/".join(rest[: i + 1]) for i in range(len(rest))]


def may_be_protected(protected: Iterable[str]) -> Callable[[list[str]], bool]:
    """A test of a page's names at once: true whenever one of them is protected (`fold_name` of it among the
    protected names), seldom otherwise, so that a page's names are looked at one by one only then.

    An ASCII name folds by lower-casing and trimming trailing spaces and dots, so one that folds to a protected
    name starts with it, lower-cased: the page's names, joined after a "/" each and lower-cased, hold "/" and
    that name. A page with any other name is always looked at name by name. A name holding "/" (no file
    system allows one) can only make the test true, never hide a protected name.
    """
    needles = tuple(sorted({"/" + folded for folded in map(fold_name, protected) if folded.isascii()}))

    def test(names: list[str]) -> bool:
        joined = "/" + "/".join(names)
        if not joined.isascii():
            return True
        lowered = joined.lower()
        return any(needle in lowered for needle in needles)

    return test


@dataclass(slots=True)
class Found:
    """Entries of one kind found in a tree: the first one's path, and how many (a million links keep one path)."""

    first: str | None = None
    count: int = 0

    def add(self, path: str) -> None:
        if self.first is None:
            self.first = path
        self.count += 1

    def named(self, *, partly: bool = False) -> str:
        """The first one, and how many more (`partly`: the tree was not read to its end, so at least that many)."""
        assert self.first is not None
        more = self.count - 1
        return display(self.first) + (f" (and {'at least ' if partly else ''}{more} more)" if more > 0 else "")


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
        limits: WalkLimits,
        links_inside: Literal["refuse", "allow"] = "refuse",
        *,
        resume: dict[str, TreeWalk] | None = None,
    ) -> None:
        self.listings = listings
        self.policy = policy
        self.limits = limits
        self.links_inside = links_inside
        self.entries_read = 0
        #: Folder walks an earlier call left unfinished (Inspection.unfinished), by folder path.
        self.resume = resume or {}
        self._may_be_protected = may_be_protected(policy.protected_names)

    async def check(
        self,
        paths: Iterable[str],
        *,
        walk_folders: bool,
        listed: Mapping[str, Entry] | None = None,
        share_budget: bool = False,
    ) -> Inspection:
        """`listed`: entries a search of this call listed moments ago, by path. A **file**'s own entry may be
        taken from there (its parent is then not listed again); every folder above it is still looked up now, so
        a folder on the way swapped for a link since is refused as always. Folders and links are always looked
        up now. (A file swapped since is caught where it matters: execution looks it up again.)

        `share_budget`: the folders' walks, read together, share what is left of the entry budget (each its part),
        so the call reads no more than its budget whatever the number of folders; a folder not read whole within
        its part is `unfinished` (read on by a later call). Otherwise each may use what is left when it starts."""
        paths = list(paths)
        result = Inspection()
        alive: dict[str, list[str]] = {}
        found: dict[str, Entry | EfileMcpError | None] = {}
        for path in paths:
            root = self.policy.root_of(path)
            if root is None:  # the policy accepted it, so this cannot happen; refuse rather than assume
                result.refused[path] = "it is not inside an allowed root."
                continue
            alive[path] = components_below_root(path, root)
            known = listed.get(path) if listed is not None else None
            if known is not None and known.kind == "file" and path != root:
                found[path] = known
        folders: list[tuple[str, Entry]] = []
        level = 0
        # One level at a time: a chain whose component is missing (or not a folder, or a link) ends there.
        while alive:
            wanted = {chain[level] for chain in alive.values()} - found.keys()
            if wanted:
                found.update(await self.listings.entries(wanted))
            for path, chain in list(alive.items()):
                entry = found.get(chain[level])
                last = level == len(chain) - 1
                if not last and isinstance(entry, Entry) and entry.kind == "directory":
                    continue
                del alive[path]
                verdict = self._judge_chain(path, chain[: level + 1], found)
                if not isinstance(verdict, Entry):  # (Entry is a tuple too: test for it, not for tuple)
                    kind, reason = verdict
                    (result.refused if kind == "refused" else result.missing)[path] = reason
                    continue
                if verdict.kind == "directory" and walk_folders:
                    folders.append((path, verdict))
                else:
                    result.seen[path] = SeenPath(
                        path,
                        verdict.kind,
                        verdict.size if verdict.kind != "directory" else 0,
                        verdict.mtime,
                        verdict.size,
                        int(verdict.kind == "file"),
                        verdict.mtime,
                    )
            level += 1
        if folders:
            left = max(0, self.limits.max_entries - self.entries_read)
            each, extra = divmod(left, len(folders))
            async with task_group() as tg:
                for at, (path, entry) in enumerate(folders):
                    part = each + (at < extra) if share_budget else None
                    tg.start_soon(self._size_folder, path, entry, result, part)
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

    async def _size_folder(self, path: str, entry: Entry, result: Inspection, budget: int | None = None) -> None:
        tree = Totals()
        tree.see(entry.mtime)
        protected = Found()
        links = Found()
        refuse_links = self.links_inside == "refuse"
        fingerprint: list[int] = []
        is_protected, may_be_protected = self.policy.is_protected_name, self._may_be_protected

        def on_entries(folder: str, depth: int, batch: list[Entry]) -> None:
            # Once per entry of the tree: the names are looked at one by one only when the page may hold a
            # protected one, and links only where they refuse the folder (the walk's totals count them).
            if may_be_protected([child.name for child in batch]):
                for child in batch:
                    if is_protected(child.name):
                        protected.add(join(folder, child.name))
            if refuse_links:
                for name in [child.name for child in batch if child.kind == "symlink"]:
                    links.add(join(folder, name))

        def refused_already() -> bool:
            """The folder is refused whatever the rest holds: nothing more of it is read."""
            return protected.count > 0 or links.count > 0

        def on_closed(closed: ClosedDir) -> None:
            if closed.depth == 0:
                tree.add(closed.totals)
                fingerprint.append(closed.fingerprint)

        # A walk resumed from an earlier call: what it read then held no protected name and no refused link
        # (the folder would have been refused, not left unfinished), so only what is left needs looking at.
        walk = self.resume.get(path) or TreeWalk(path, aggregate=True, fingerprint=True)
        before = walk.stats.entries_seen
        limits = self.limits.less(self.entries_read) if budget is None else WalkLimits(budget, self.limits.deadline)
        stats = await self.listings.walk(walk, on_entries, limits=limits, on_closed=on_closed, stop=refused_already)
        self.entries_read += stats.entries_seen - before
        partly = bool(stats.stopped)
        if protected.count:
            result.refused[path] = (
                f"it holds {protected.named(partly=partly)}, a protected name: removing the folder would remove it "
                "too. Name the other contents individually instead."
            )
            return
        if links.count:
            result.refused[path] = (
                f"it holds the symbolic link {links.named(partly=partly)}: efile-mcp does not remove folders with "
                "links inside for good (the storage may follow them). "
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
            if stats.stopped and not stats.incomplete_dirs:
                result.unfinished[path] = walk
            return
        if tree.unknown:
            result.uncertain.add(path)
        result.seen[path] = SeenPath(
            path,
            "directory",
            tree.size,
            entry.mtime,
            entry.size,
            tree.files,
            tree.newest,
            complete=stats.complete,
            fingerprint=format(fingerprint[0], "032x") if fingerprint else None,
        )
