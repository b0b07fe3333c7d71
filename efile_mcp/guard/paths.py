"""Path policy: the hard rule every remote path must pass before it may be deleted.

The policy is deliberately lexical and strict. It never normalises a path: an
accepted path is returned exactly as given, because the string that was checked
must be the string that is sent. Anything ambiguous (relative, non-canonical,
dot segments, percent-escapes that could decode into traversal, invisible
characters) is refused with a message telling the agent what to send instead,
rather than being "fixed" into something the agent did not write.

This module is pure: standard library only, no I/O, no imports from the rest of
the package, so it can be reasoned about and tested in isolation.
"""

from __future__ import annotations

import reprlib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import unquote

__all__ = [
    "DEFAULT_PROTECTED",
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "Collapsed",
    "PathPolicy",
    "PathRefusal",
    "collapse",
    "display",
    "expand_home",
    "fold_name",
    "is_home_relative",
    "is_within",
]

DEFAULT_PROTECTED: frozenset[str] = frozenset({".ssh", ".gnupg", ".bashrc", ".bash_profile", ".profile", ".zshrc"})
MAX_PATH_BYTES = 4096  # UTF-8 bytes of the whole path (Linux PATH_MAX)
MAX_NAME_BYTES = 255  # UTF-8 bytes of one component (Linux NAME_MAX)

# Cc/Cf cover NUL, newlines, C1 controls, bidi overrides, zero-width characters
# and the BOM; Cs is a lone surrogate, which cannot be encoded as UTF-8.
# Zl/Zp (U+2028, U+2029) are line breaks to many renderers and to
# str.splitlines(), so they could split a path across lines in a log or prompt.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_GLOB_CHARS = frozenset("*?[]")
_DOT_SEGMENTS = frozenset({".", ".."})
# A server that decodes more than this many times is not a realistic threat;
# the cap keeps the check linear even for huge hostile components.
_MAX_DECODE_LAYERS = 8
# Long enough to show every realistic path in full, short enough that a
# 4 KiB path does not flood the agent's context.
_MAX_SHOWN_CHARS = 300

_SIMPLE_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_ROOT_EXAMPLE = "/public/home/alice/scratch"

_reprlib = reprlib.Repr()
_reprlib.maxstring = 120
_reprlib.maxother = 120


def is_home_relative(root: str) -> bool:
    """`~` or `~/...`: an allowed root relative to the remote home the SCNet center reports."""
    return root == "~" or root.startswith("~/")


def expand_home(root: str, home: str) -> str:
    """`~` and `~/...` at the start of an allowed root mean the remote home the SCNet center reports."""
    if not is_home_relative(root):
        return root
    return (home.rstrip("/") + root[1:]) or "/"


def fold_name(name: str) -> str:
    """A name as protection compares it: NFKC, case-folded, trailing spaces and dots trimmed.

    So `.SSH`, `．ｓｓｈ` (full-width) and `.ssh ` (which some file systems and renderers treat as
    `.ssh`) are all `.ssh`.
    """
    folded = unicodedata.normalize("NFKC", name).casefold()
    trimmed = folded.rstrip(" .")
    return trimmed if trimmed else folded


@dataclass(frozen=True, slots=True)
class PathRefusal:
    """Why one path may not be deleted.

    ``code`` is stable and meant for programs; ``message`` is one line meant
    for the agent and never contains raw control characters.
    """

    path: str
    code: str
    message: str


def display(path: str) -> str:
    """Render ``path`` as a double-quoted, Python-style escaped literal.

    Backslashes, double quotes and every non-printable character (controls,
    bidi overrides, zero-width characters, surrogates, unusual spaces) are
    escaped, so what the agent reads is unambiguous and stays on one line;
    ``ast.literal_eval(display(p)) == p`` holds for every string.
    """
    if path.isprintable() and '"' not in path and "\\" not in path:
        return f'"{path}"'
    out = ['"']
    for ch in path:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch.isprintable():
            out.append(ch)
        elif ch in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[ch])
        else:
            cp = ord(ch)
            if cp < 0x100:
                out.append(f"\\x{cp:02x}")
            elif cp < 0x10000:
                out.append(f"\\u{cp:04x}")
            else:
                out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


def _shown(path: str) -> str:
    if len(path) <= _MAX_SHOWN_CHARS:
        return display(path)
    head = path[: _MAX_SHOWN_CHARS * 2 // 3]
    tail = path[-(_MAX_SHOWN_CHARS // 6) :]
    return f"{display(head)}...{display(tail)} ({len(path)} characters)"


def _describe_value(value: object) -> str:
    # repr() of an arbitrary object may be huge, raise, or contain raw control
    # characters; none of that may leak into a refusal.
    try:
        text = _reprlib.repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return display(text)[1:-1]


def is_within(path: str, root: str) -> bool:
    """True when ``path`` is strictly below ``root``, by whole components.

    Both arguments are expected to be canonical absolute paths (as accepted by
    the policy); ``/a/b`` contains ``/a/b/c`` but neither ``/a/bc`` nor itself.
    """
    if root == "/":
        return path != "/" and path.startswith("/")
    # Requiring the separator right after the root is what makes "/a/bc" fall
    # outside "/a/b"; a bare startswith(root) would let it in.
    return path.startswith(root + "/")


def _components(path: str) -> list[str]:
    return [] if path == "/" else path[1:].split("/")


def _canonical_form(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts)


def _first_forbidden_char(path: str) -> tuple[int, str] | None:
    # isprintable() is a fast C-level pre-filter: every forbidden category is
    # non-printable, so only unusual paths pay for the per-character scan.
    if path.isprintable():
        return None
    for index, ch in enumerate(path):
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            return index, ch
    return None


def _char_label(ch: str) -> str:
    cp = ord(ch)
    name = unicodedata.name(ch, "")
    if unicodedata.category(ch) == "Cs":
        name = "lone surrogate, not encodable as UTF-8"
    return f"U+{cp:04X} ({name})" if name else f"U+{cp:04X}"


def _dangerous_decoding(component: str) -> str | None:
    """The decoded text of ``component`` if some decoding layer is dangerous.

    A literal "100%" or "a%20b" decodes harmlessly and is a normal name; only
    escapes that could become traversal or a separator on a server that
    decodes are refused. Layers are peeled repeatedly to catch double
    encoding such as "%252e%252e".
    """
    current = component
    for _ in range(_MAX_DECODE_LAYERS):
        decoded = unquote(current, errors="replace")
        if decoded == current:
            return None
        if decoded in _DOT_SEGMENTS or "/" in decoded or "\\" in decoded or "\x00" in decoded:
            return decoded
        current = decoded
    # Still changing after many layers: nobody names a file like that by
    # accident, and we cannot vouch for what it finally decodes to.
    return current


# (code, what is wrong, what to do instead)
_Problem = tuple[str, str, str]


def _syntax_problem(path: str) -> _Problem | None:
    """The first syntactic rule ``path`` breaks, shared by paths and roots."""
    if path == "":
        return ("empty", "the path is empty", "give the full absolute remote path of the file or directory")
    if not path.startswith("/"):
        if path.startswith("~"):
            hint = "'~' is not expanded, so give the full absolute remote path starting with '/'"
        else:
            hint = "give the full absolute remote path starting with '/', as returned by list_files"
        return ("relative", "the path is not absolute", hint)
    bad = _first_forbidden_char(path)
    if bad is not None:
        index, ch = bad
        return (
            "control_character",
            f"it contains the control or invisible character {_char_label(ch)} at index {index}",
            "such characters can disguise a path, so copy the path exactly as list_files shows it, "
            "and if the file really has such a name ask the person to delete it by hand",
        )
    if "\\" in path:
        return (
            "backslash",
            "it contains a backslash",
            "remote paths are POSIX paths, so separate components with forward slashes '/'",
        )
    if any(ch in _GLOB_CHARS for ch in path):
        return (
            "glob",
            "it contains a wildcard character (* ? [ ])",
            "the API does not expand patterns, so list the directory with list_files and name each path explicitly",
        )
    if "//" in path or (path != "/" and path.endswith("/")):
        return (
            "non_canonical",
            "it has repeated or trailing slashes",
            f"send the canonical form {_shown(_canonical_form(path))} instead",
        )
    components = _components(path)
    for component in components:
        if component in _DOT_SEGMENTS:
            return (
                "dot_segment",
                f"it contains a {display(component)} component",
                "relative segments are never resolved, so name the target by its full path without '.' or '..'",
            )
    if "%" in path:
        for component in components:
            if "%" not in component:
                continue
            decoded = _dangerous_decoding(component)
            if decoded is not None:
                return (
                    "percent_encoded",
                    f"the component {_shown(component)} contains percent-escapes that decode to {_shown(decoded)}",
                    "write the path literally without percent-encoding, using only real file names",
                )
    size = len(path.encode("utf-8"))
    if size > MAX_PATH_BYTES:
        return (
            "too_long",
            f"it is {size} UTF-8 bytes long, over the {MAX_PATH_BYTES}-byte limit",
            "check that the path was not corrupted, because longer paths cannot be deleted through this tool",
        )
    for component in components:
        name_size = len(component.encode("utf-8"))
        if name_size > MAX_NAME_BYTES:
            return (
                "too_long",
                f"one component is {name_size} UTF-8 bytes long, over the {MAX_NAME_BYTES}-byte limit for a name",
                "check that the path was not corrupted and copy it exactly as list_files shows it",
            )
    return None


def _refusal(path: str, code: str, reason: str, hint: str) -> PathRefusal:
    return PathRefusal(path=path, code=code, message=f"Refused {_shown(path)}: {reason}; {hint}.")


class PathPolicy:
    """Decides, without I/O, whether a remote path may be deleted."""

    __slots__ = ("_allowed_roots", "_protected_folded", "_protected_names", "_root_set")

    def __init__(
        self,
        allowed_roots: Iterable[str],
        protected_names: Iterable[str] = DEFAULT_PROTECTED,
    ) -> None:
        # A single string is iterable too; iterating it would yield "/" and
        # letters and produce a baffling error about the root "/".
        if isinstance(allowed_roots, str):
            raise TypeError("allowed_roots must be a collection of paths, not a single string")
        if isinstance(protected_names, str):
            raise TypeError("protected_names must be a collection of names, not a single string")

        roots: list[str] = []
        seen: set[str] = set()
        for root in allowed_roots:
            _validate_root(root)
            if root not in seen:
                seen.add(root)
                roots.append(root)
        # Nested roots are all kept: a root the person named explicitly stays
        # undeletable even when an outer root also contains it.
        self._allowed_roots: tuple[str, ...] = tuple(roots)
        self._root_set: frozenset[str] = frozenset(roots)

        names: set[str] = set()
        for name in protected_names:
            _validate_protected_name(name)
            names.add(name)
        self._protected_names: frozenset[str] = frozenset(names)
        self._protected_folded: frozenset[str] = frozenset(fold_name(n) for n in names)

    @property
    def allowed_roots(self) -> tuple[str, ...]:
        return self._allowed_roots

    @property
    def protected_names(self) -> frozenset[str]:
        return self._protected_names

    def __repr__(self) -> str:
        return f"PathPolicy(allowed_roots={self._allowed_roots!r}, protected_names={sorted(self._protected_names)!r})"

    def is_protected_name(self, name: str) -> bool:
        return fold_name(name) in self._protected_folded

    def protected_component(self, path: str) -> str | None:
        """The first protected name among the components of `path`, however it is spelled (`//`, trailing `/`)."""
        for component in path.split("/"):
            if component and self.is_protected_name(component):
                return component
        return None

    def root_of(self, path: str) -> str | None:
        """The outermost allowed root strictly containing `path`: every component below it must be a real
        folder, so a link between nested roots (outer/x -> elsewhere, inner root outer/x/y) is caught."""
        inside = [root for root in self._allowed_roots if is_within(path, root)]
        return min(inside, key=len) if inside else None

    def check(self, path: object) -> str | PathRefusal:
        """Return ``path`` unchanged if it may be deleted, else a refusal."""
        if not isinstance(path, str):
            shown = _describe_value(path)
            return PathRefusal(
                path=shown,
                code="not_a_string",
                message=(
                    f"Refused {shown}: expected a string but got {type(path).__name__}; "
                    "pass each path as one absolute remote path string."
                ),
            )
        if type(path) is not str:
            # A str subclass could override comparison or slicing and make the
            # checks below see something other than what gets sent.
            path = str.__str__(path)

        problem = _syntax_problem(path)
        if problem is not None:
            return _refusal(path, *problem)
        if path == "/":
            return _refusal(
                path,
                "root_slash",
                "it is the file-system root",
                "the root can never be deleted, so name specific files or directories inside an allowed root",
            )
        if not self._allowed_roots:
            return _refusal(
                path,
                "no_allowed_roots",
                "deletion is disabled because no allowed roots are configured",
                "ask the person to set EFILE_ALLOWED_ROOTS (comma-separated absolute remote paths) "
                "or pass --allowed-root, then try again",
            )
        if path in self._root_set:
            return _refusal(
                path,
                "is_allowed_root",
                "it is an allowed root itself, and a root can never be deleted",
                "name the files or directories inside it instead (list them with list_files)",
            )
        if not any(is_within(path, root) for root in self._allowed_roots):
            roots = ", ".join(_shown(r) for r in self._allowed_roots)
            return _refusal(
                path,
                "outside_allowed_roots",
                "it is not inside any allowed root",
                f"only paths strictly inside {roots} may be deleted",
            )
        inner_roots = [root for root in self._allowed_roots if is_within(root, path)]
        if inner_roots:
            return _refusal(
                path,
                "contains_allowed_root",
                f"it contains the allowed root {_shown(inner_roots[0])}, and a root can never be deleted",
                "name the files or directories inside the roots instead",
            )
        if self._protected_folded:
            for component in _components(path):
                if fold_name(component) in self._protected_folded:
                    return _refusal(
                        path,
                        "protected",
                        f"its component {_shown(component)} is a protected name",
                        "protected files and everything inside them can never be deleted by this tool, "
                        "so leave them out of the request",
                    )
        return path


def _validate_root(root: object) -> None:
    if not isinstance(root, str):
        raise ValueError(
            f"Allowed root {_describe_value(root)} is not a string; "
            f"configure absolute remote directories such as {_ROOT_EXAMPLE}."
        )
    problem = _syntax_problem(root)
    if problem is not None:
        code, reason, _hint = problem
        fix = (
            f"use {_shown(_canonical_form(root))} instead"
            if code == "non_canonical"
            else f"configure an absolute, canonical remote directory such as {_ROOT_EXAMPLE}"
        )
        raise ValueError(f"Allowed root {_shown(root)} is invalid because {reason}; {fix}.")
    if root == "/":
        raise ValueError(
            'Allowed root "/" is refused because it would allow deleting the whole file system; '
            f"configure specific directories such as {_ROOT_EXAMPLE}."
        )


def _validate_protected_name(name: object) -> None:
    # A name that can never equal a path component would silently protect
    # nothing, e.g. ".ssh/" configured where ".ssh" was meant.
    if not isinstance(name, str):
        raise ValueError(f"Protected name {_describe_value(name)} is not a string; configure plain file names.")
    if name == "" or "/" in name or name in _DOT_SEGMENTS or _first_forbidden_char(name) is not None:
        raise ValueError(
            f"Protected name {_shown(name)} can never match a path component; "
            "configure a plain file or directory name such as .ssh without slashes."
        )


@dataclass(frozen=True, slots=True)
class Collapsed:
    """A deletion request with duplicates and redundant descendants identified.

    Deleting a directory removes everything below it, so a path whose
    ancestor is also requested need not (and should not) be sent separately.
    """

    unique: tuple[str, ...]
    covered: Mapping[str, str]

    @property
    def to_send(self) -> tuple[str, ...]:
        covered = self.covered
        return tuple(p for p in self.unique if p not in covered)


def _ancestors_top_down(path: str) -> Iterable[str]:
    if path != "/" and path.startswith("/"):
        yield "/"
    index = path.find("/", 1)
    while index != -1:
        yield path[:index]
        index = path.find("/", index + 1)


def collapse(paths: Iterable[str]) -> Collapsed:
    """Deduplicate ``paths`` and map each covered path to its top-most requested ancestor.

    Works lexically on canonical paths (as accepted by :class:`PathPolicy`);
    cost is one set look-up per ancestor, so O(n * depth) overall.
    """
    unique: list[str] = []
    present: set[str] = set()
    for path in paths:
        if path not in present:
            present.add(path)
            unique.append(path)

    covered: dict[str, str] = {}
    for path in unique:
        # Walking from the top means the first hit is the top-most ancestor.
        for ancestor in _ancestors_top_down(path):
            if ancestor in present and ancestor != path:
                covered[path] = ancestor
                break
    return Collapsed(unique=tuple(unique), covered=MappingProxyType(covered))
