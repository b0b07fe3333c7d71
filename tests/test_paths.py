"""Table and property tests for the path policy, the hard rule checked before any deletion."""

from __future__ import annotations

import ast
import pathlib
import unicodedata
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from efile_mcp.guard.paths import (
    DEFAULT_PROTECTED,
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    Collapsed,
    PathPolicy,
    PathRefusal,
    collapse,
    display,
    is_within,
)

SCRATCH = "/public/home/alice/scratch"
WORK = "/work/alice"
ROOTS = (SCRATCH, WORK)
POLICY = PathPolicy(ROOTS, DEFAULT_PROTECTED)

CODES = frozenset(
    {
        "not_a_string",
        "empty",
        "relative",
        "control_character",
        "backslash",
        "glob",
        "non_canonical",
        "dot_segment",
        "percent_encoded",
        "too_long",
        "root_slash",
        "no_allowed_roots",
        "is_allowed_root",
        "outside_allowed_roots",
        "protected",
    }
)
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
OK = "accepted"


def path_of_bytes(total: int, root: str = WORK) -> str:
    """A canonical path under ``root`` of exactly ``total`` UTF-8 bytes, every name within NAME_MAX."""
    parts = [root]
    remaining = total - len(root.encode())
    while remaining > MAX_NAME_BYTES + 1:
        parts.append("/" + "d" * 99)
        remaining -= 100
    parts.append("/" + "e" * (remaining - 1))
    path = "".join(parts)
    assert len(path.encode()) == total
    return path


# (path, expected code or OK)
CASES: list[tuple[object, str]] = [
    # --- ordinary and awkward but legal names --------------------------------
    (WORK + "/old.log", OK),
    (SCRATCH + "/run1/output.dat", OK),
    (WORK + "/a/b/c/d/e/f/g.txt", OK),
    (WORK + "/my file (1).txt", OK),
    (WORK + "/数据", OK),
    (WORK + "/résumé", OK),
    (WORK + "/データ (copy)", OK),
    (WORK + "/ملف", OK),
    (WORK + "/Ελληνικά/файл", OK),
    (WORK + "/emoji 🎉🚀", OK),
    (WORK + "/\u2764\ufe0f", OK),  # heart + variation selector (Mn, not Cf)
    (WORK + "/cafe\u0301", OK),  # decomposed accent is a different, legal name
    (WORK + '/it\'s "quoted"', OK),
    (WORK + "/#tag & $HOME ~", OK),
    (WORK + "/~", OK),
    (WORK + "/{a,b}", OK),
    (WORK + "/!bang+plus=eq,comma;semi", OK),
    (WORK + "/ leading space", OK),
    (WORK + "/trailing space ", OK),
    (WORK + "/   ", OK),
    (WORK + "/x\u00a0nbsp", OK),
    (WORK + "/x\u3000ideographic", OK),
    (WORK + "/.cache", OK),
    (WORK + "/dir/.cache/blob", OK),
    (WORK + "/..foo", OK),
    (WORK + "/...", OK),
    (WORK + "/te..st", OK),
    (WORK + "/test..", OK),
    (WORK + "/.ssh_old", OK),
    (WORK + "/.sshx", OK),
    (WORK + "/ssh", OK),
    (WORK + "/.bashrc.bak", OK),
    (SCRATCH + "/.profile_backup", OK),
    (WORK + "/100%", OK),
    (WORK + "/a%20b", OK),
    (WORK + "/report_50%.pdf", OK),
    (WORK + "/%41", OK),
    (WORK + "/%2", OK),
    (WORK + "/%zz", OK),
    (WORK + "/%ff", OK),
    (WORK + "/" + "x" * 255, OK),
    (WORK + "/" + "é" * 127, OK),  # 254 bytes
    (WORK + "/" + "数" * 85, OK),  # 255 bytes
    (path_of_bytes(MAX_PATH_BYTES), OK),
    # --- not a string / empty -------------------------------------------------
    (None, "not_a_string"),
    (42, "not_a_string"),
    (b"/work/alice/x", "not_a_string"),
    ([WORK + "/x"], "not_a_string"),
    (pathlib.PurePosixPath(WORK + "/x"), "not_a_string"),
    ("", "empty"),
    # --- relative -------------------------------------------------------------
    ("work/alice/x", "relative"),
    ("x", "relative"),
    ("./x", "relative"),
    ("../x", "relative"),
    ("~/x", "relative"),
    ("~alice/x", "relative"),
    (" /work/alice/x", "relative"),
    ("   ", "relative"),
    ("C:/work/alice/x", "relative"),
    ("\\work\\alice\\x", "relative"),
    ("\x00/work/alice/x", "relative"),
    # --- control and invisible characters -------------------------------------
    (WORK + "/a\x00b", "control_character"),
    (WORK + "\x00/etc/passwd", "control_character"),
    (WORK + "/x\n", "control_character"),
    (WORK + "/x\ny", "control_character"),
    (WORK + "/x\ry", "control_character"),
    (WORK + "/x\ty", "control_character"),
    (WORK + "/x\x7fy", "control_character"),
    (WORK + "/x\x85y", "control_character"),  # C1 NEXT LINE
    (WORK + "/x\x1b[31mred", "control_character"),  # ANSI escape
    (WORK + "/evil\u202etxt.exe", "control_character"),
    (WORK + "/zero\u200bwidth", "control_character"),
    (WORK + "/\ufeffbom", "control_character"),
    (WORK + "/line\u2028sep", "control_character"),
    (WORK + "/para\u2029sep", "control_character"),
    (WORK + "/lone\ud800", "control_character"),
    (WORK + "/\udfff", "control_character"),
    (WORK + "/.s\u200bsh", "control_character"),  # invisible char hiding a protected name
    # --- backslash ------------------------------------------------------------
    (WORK + "\\x", "backslash"),
    (WORK + "/a\\b", "backslash"),
    ("/work\\alice\\x", "backslash"),
    (WORK + "/..\\..\\etc", "backslash"),
    # --- glob -----------------------------------------------------------------
    (WORK + "/*", "glob"),
    (WORK + "/*.log", "glob"),
    (WORK + "/file?.txt", "glob"),
    (WORK + "/[abc]", "glob"),
    (WORK + "/a]", "glob"),
    (WORK + "/**/x", "glob"),
    (WORK + "/../*", "glob"),  # glob is reported before the dot segment
    # --- non-canonical --------------------------------------------------------
    (WORK + "/", "non_canonical"),
    (SCRATCH + "/", "non_canonical"),
    (WORK + "//x", "non_canonical"),
    ("//work/alice/x", "non_canonical"),
    (WORK + "/x/", "non_canonical"),
    (WORK + "/x//", "non_canonical"),
    ("//", "non_canonical"),
    # --- dot segments ---------------------------------------------------------
    (WORK + "/../bob", "dot_segment"),
    (WORK + "/./x", "dot_segment"),
    (WORK + "/x/..", "dot_segment"),
    (WORK + "/.", "dot_segment"),
    (WORK + "/..", "dot_segment"),
    (SCRATCH + "/../../../../etc/passwd", "dot_segment"),
    (WORK + "/x/../../alice/.ssh", "dot_segment"),
    ("/..", "dot_segment"),
    # --- percent-encoded traversal --------------------------------------------
    (WORK + "/%2e%2e", "percent_encoded"),
    (WORK + "/%2E%2E/bob", "percent_encoded"),
    (WORK + "/%2e", "percent_encoded"),
    (WORK + "/.%2e", "percent_encoded"),
    (WORK + "/a%2Fb", "percent_encoded"),
    (WORK + "/a%2fb", "percent_encoded"),
    (WORK + "/%2e%2e%2fbob", "percent_encoded"),
    (WORK + "/a%5cb", "percent_encoded"),
    (WORK + "/a%00b", "percent_encoded"),
    (WORK + "/%252e%252e", "percent_encoded"),  # double encoding
    # --- too long -------------------------------------------------------------
    (path_of_bytes(MAX_PATH_BYTES + 1), "too_long"),
    (WORK + "/" + "x" * 256, "too_long"),
    (WORK + "/" + "é" * 128, "too_long"),  # 128 chars but 256 bytes
    (WORK + "/" + "数" * 86, "too_long"),  # 258 bytes
    # --- the file-system root -------------------------------------------------
    ("/", "root_slash"),
    # --- allowed roots themselves ---------------------------------------------
    (WORK, "is_allowed_root"),
    (SCRATCH, "is_allowed_root"),
    # --- outside the allowed roots --------------------------------------------
    ("/public/home/alice/scratchy", "outside_allowed_roots"),
    ("/public/home/alice/scratchy/x", "outside_allowed_roots"),
    ("/public/home/alice/scratch-old", "outside_allowed_roots"),
    ("/public/home/alice/scratch.bak/x", "outside_allowed_roots"),
    ("/public", "outside_allowed_roots"),
    ("/public/home", "outside_allowed_roots"),
    ("/public/home/alice", "outside_allowed_roots"),  # parent of a root
    ("/public/home/alice/other", "outside_allowed_roots"),  # sibling of a root
    ("/work", "outside_allowed_roots"),
    ("/work/alice2", "outside_allowed_roots"),
    ("/work/alicex/y", "outside_allowed_roots"),
    ("/work/bob/x", "outside_allowed_roots"),
    ("/Work/alice/x", "outside_allowed_roots"),  # roots are case-sensitive
    ("/etc/passwd", "outside_allowed_roots"),
    ("/scratch", "outside_allowed_roots"),
    # --- protected names ------------------------------------------------------
    (WORK + "/.ssh", "protected"),
    (WORK + "/.ssh/authorized_keys", "protected"),
    (WORK + "/.SSH", "protected"),
    (WORK + "/.Ssh/id_rsa", "protected"),
    (WORK + "/proj/.gnupg", "protected"),
    (WORK + "/proj/.GnuPG/private-keys-v1.d", "protected"),
    (WORK + "/.bashrc", "protected"),
    (WORK + "/.BASH_PROFILE", "protected"),
    (WORK + "/.profile", "protected"),
    (SCRATCH + "/.zshrc", "protected"),
]


def _id(value: object) -> str:
    text = display(value) if isinstance(value, str) else f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:40] + "..." + str(len(text))


@pytest.mark.parametrize(("path", "expected"), CASES, ids=[_id(p) for p, _ in CASES])
def test_policy_table(path: object, expected: str) -> None:
    result = POLICY.check(path)
    if expected == OK:
        assert result == path, result
        assert type(result) is str
        assert result is path  # no normalisation: the very string checked is the one returned
    else:
        assert isinstance(result, PathRefusal), f"accepted {display(str(path))}"
        assert result.code == expected, result.message
        if isinstance(path, str):
            assert result.path is path


def test_table_covers_every_code_and_is_large() -> None:
    assert len(CASES) >= 80
    assert {code for _, code in CASES} == CODES - {"no_allowed_roots"} | {OK}


def _assert_clean_message(message: str) -> None:
    assert isinstance(message, str) and message
    assert len(message.splitlines()) == 1
    assert "\n" not in message and "\r" not in message
    bad = [ch for ch in message if unicodedata.category(ch) in FORBIDDEN_CATEGORIES]
    assert not bad, f"raw control characters in message: {bad!r}"


REFUSED_CASES = [(p, c) for p, c in CASES if c != OK]


@pytest.mark.parametrize(("path", "code"), REFUSED_CASES, ids=[_id(p) for p, _ in REFUSED_CASES])
def test_refusal_messages_are_single_clean_lines(path: object, code: str) -> None:
    result = POLICY.check(path)
    assert isinstance(result, PathRefusal)
    _assert_clean_message(result.message)
    if code == "not_a_string":
        _assert_clean_message(result.path)
    if isinstance(path, str) and path and len(path) <= 300:
        assert display(path) in result.message


def test_refusal_message_escapes_the_offending_path() -> None:
    cases = {
        WORK + "/a\x00b": "\\x00",
        WORK + "/x\ny": "\\n",
        WORK + "/evil\u202etxt": "\\u202e",
        WORK + "/lone\ud800": "\\ud800",
        WORK + "/tab\tx": "\\t",
        WORK + "/a\\b": "\\\\",
    }
    for path, escaped in cases.items():
        result = POLICY.check(path)
        assert isinstance(result, PathRefusal)
        assert escaped in result.message, result.message


@pytest.mark.parametrize(
    ("path", "needles"),
    [
        (WORK + "/*.log", ["list_files", "expand"]),
        (WORK + "/x//y/", ['"/work/alice/x/y"']),
        (WORK + "/", ['"/work/alice"']),
        (WORK + "/a\\b", ["forward slash"]),
        (WORK, ["never be deleted", "inside"]),
        ("/public/home/alice/scratchy", [display(SCRATCH), display(WORK)]),
        (WORK + "/proj/.SSH/id_rsa", ['".SSH"']),
        (WORK + "/x/../y", ['".."']),
        (WORK + "/%2e%2e", ['"%2e%2e"', '".."']),
        (WORK + "/evil\u202etxt", ["U+202E", "RIGHT-TO-LEFT OVERRIDE"]),
        ("~/x", ["'~'"]),
        (path_of_bytes(MAX_PATH_BYTES + 1), ["4097", "4096"]),
        (WORK + "/" + "x" * 256, ["256", "255"]),
    ],
)
def test_refusal_messages_are_actionable(path: str, needles: list[str]) -> None:
    result = POLICY.check(path)
    assert isinstance(result, PathRefusal)
    for needle in needles:
        assert needle in result.message, result.message


def test_long_paths_are_abbreviated_in_messages() -> None:
    result = POLICY.check(path_of_bytes(MAX_PATH_BYTES + 1))
    assert isinstance(result, PathRefusal)
    assert len(result.message) < 1000
    assert len(result.path) == MAX_PATH_BYTES + 1


def test_str_subclass_is_checked_and_returned_as_plain_str() -> None:
    class Sneaky(str):
        pass

    result = POLICY.check(Sneaky(WORK + "/x"))
    assert result == WORK + "/x" and type(result) is str
    refused = POLICY.check(Sneaky(WORK + "/.ssh"))
    assert isinstance(refused, PathRefusal) and refused.code == "protected"


# --- display -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("/work/alice/x", '"/work/alice/x"'),
        ("/数据/résumé 🎉", '"/数据/résumé 🎉"'),
        ("a\x00b", '"a\\x00b"'),
        ("a\nb", '"a\\nb"'),
        ("a\u202eb", '"a\\u202eb"'),
        ("a\u200bb", '"a\\u200bb"'),
        ("\ud800", '"\\ud800"'),
        ("\U000e0001", '"\\U000e0001"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("", '""'),
    ],
)
def test_display(raw: str, shown: str) -> None:
    assert display(raw) == shown


@settings(max_examples=1500, deadline=None)
@given(st.text())
def test_display_round_trips_and_stays_on_one_line(text: str) -> None:
    shown = display(text)
    assert ast.literal_eval(shown) == text
    assert len(shown.splitlines()) == 1
    assert not any(unicodedata.category(ch) in FORBIDDEN_CATEGORIES for ch in shown)


# --- is_within / contains ---------------------------------------------------------


@pytest.mark.parametrize(
    ("root", "path", "inside"),
    [
        ("/a/b", "/a/b/c", True),
        ("/a/b", "/a/b/c/d", True),
        ("/a/b", "/a/bc", False),
        ("/a/b", "/a/b", False),
        ("/a/b", "/a", False),
        ("/a/b", "/", False),
        ("/a/b", "/x/a/b/c", False),
        ("/", "/a", True),
        ("/", "/", False),
    ],
)
def test_is_within(root: str, path: str, inside: bool) -> None:
    assert is_within(path, root) is inside


# --- constructor ------------------------------------------------------------------


@pytest.mark.parametrize(
    "root",
    [
        "",
        "relative/dir",
        "~/scratch",
        "/",
        "//",
        "/work/../etc",
        "/work/./alice",
        "/work/alice/",
        "/work//alice",
        "/work/*",
        "/work/alice?",
        "/work\\alice",
        "/work/al\nice",
        "/work/\u202ealice",
        "/work/%2e%2e",
        "/" + "x" * 256,
    ],
)
def test_bad_root_raises_value_error_naming_it(root: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        PathPolicy([WORK, root])
    message = str(excinfo.value)
    assert display(root) in message
    _assert_clean_message(message)


@pytest.mark.parametrize("root", [None, 7, b"/work/alice"])
def test_non_string_root_raises_value_error(root: object) -> None:
    with pytest.raises(ValueError, match="not a string"):
        PathPolicy([root])  # type: ignore[list-item]


def test_single_string_instead_of_collection_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        PathPolicy(WORK)
    with pytest.raises(TypeError):
        PathPolicy([WORK], ".ssh")


@pytest.mark.parametrize("name", ["", ".ssh/", "a/b", ".", "..", "x\x00"])
def test_unmatchable_protected_name_raises(name: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        PathPolicy([WORK], {name})
    assert display(name) in str(excinfo.value)


def test_duplicate_roots_collapse_in_first_seen_order() -> None:
    policy = PathPolicy(iter([WORK, SCRATCH, WORK, SCRATCH]))
    assert policy.allowed_roots == (WORK, SCRATCH)


def test_nested_roots_are_kept_and_each_is_undeletable() -> None:
    policy = PathPolicy([WORK, WORK + "/keep"])
    assert policy.allowed_roots == (WORK, WORK + "/keep")
    assert policy.check(WORK + "/keep/x") == WORK + "/keep/x"
    assert policy.check(WORK + "/other") == WORK + "/other"
    refused = policy.check(WORK + "/keep")
    assert isinstance(refused, PathRefusal) and refused.code == "is_allowed_root"


def test_attributes_and_defaults() -> None:
    assert POLICY.allowed_roots == ROOTS
    assert POLICY.protected_names == DEFAULT_PROTECTED
    assert PathPolicy([WORK]).protected_names == DEFAULT_PROTECTED
    with pytest.raises(AttributeError):
        POLICY.allowed_roots = ("/",)  # type: ignore[misc]


def test_extra_protected_names_are_case_insensitive() -> None:
    policy = PathPolicy([WORK], DEFAULT_PROTECTED | {"Keep.ME", "ÉTÉ"})
    for path in (WORK + "/keep.me", WORK + "/KEEP.ME/x", WORK + "/été", WORK + "/.ssh"):
        result = policy.check(path)
        assert isinstance(result, PathRefusal) and result.code == "protected", path
    assert policy.check(WORK + "/keep.me2") == WORK + "/keep.me2"


def test_empty_protected_set_protects_nothing() -> None:
    policy = PathPolicy([WORK], frozenset())
    assert policy.check(WORK + "/.ssh") == WORK + "/.ssh"


@pytest.mark.parametrize(
    "path",
    [WORK + "/x", SCRATCH + "/run/out.dat", "/etc/passwd", WORK, WORK + "/.ssh", "/public"],
)
def test_no_roots_refuses_every_valid_path_as_no_allowed_roots(path: str) -> None:
    for policy in (PathPolicy([]), PathPolicy(())):
        result = policy.check(path)
        assert isinstance(result, PathRefusal)
        assert result.code == "no_allowed_roots"
        assert "EFILE_ALLOWED_ROOTS" in result.message and "--allowed-root" in result.message
        _assert_clean_message(result.message)


def test_no_roots_still_reports_syntax_problems_first() -> None:
    policy = PathPolicy([])
    assert policy.check("relative").code == "relative"  # type: ignore[union-attr]
    assert policy.check("/").code == "root_slash"  # type: ignore[union-attr]
    assert policy.check(WORK + "/*").code == "glob"  # type: ignore[union-attr]


# --- collapse --------------------------------------------------------------------


def test_collapse_duplicates() -> None:
    result = collapse(["/a/x", "/a/y", "/a/x", "/a/y", "/a/x"])
    assert result.unique == ("/a/x", "/a/y")
    assert dict(result.covered) == {}
    assert result.to_send == ("/a/x", "/a/y")


def test_collapse_maps_to_top_most_ancestor() -> None:
    result = collapse(["/a/b/c", "/a/b", "/z", "/a", "/a/b/c/d"])
    assert result.unique == ("/a/b/c", "/a/b", "/z", "/a", "/a/b/c/d")
    assert dict(result.covered) == {"/a/b/c": "/a", "/a/b": "/a", "/a/b/c/d": "/a"}
    assert result.to_send == ("/z", "/a")


def test_collapse_is_boundary_safe() -> None:
    result = collapse(["/a/b", "/a/bc", "/a/b.bak", "/a/b/c"])
    assert dict(result.covered) == {"/a/b/c": "/a/b"}
    assert result.to_send == ("/a/b", "/a/bc", "/a/b.bak")


def test_collapse_preserves_first_seen_order() -> None:
    paths = ["/w/3", "/w/1", "/w/2", "/w/1/x", "/w/0"]
    assert collapse(paths).to_send == ("/w/3", "/w/1", "/w/2", "/w/0")


def test_collapse_empty_and_immutable() -> None:
    empty = collapse([])
    assert empty.unique == () and empty.to_send == () and dict(empty.covered) == {}
    result = collapse(["/a", "/a/b"])
    assert isinstance(result, Collapsed)
    with pytest.raises(TypeError):
        result.covered["/x"] = "/a"  # type: ignore[index]
    with pytest.raises(AttributeError):
        result.unique = ()  # type: ignore[misc]


def test_collapse_root_slash_covers_everything() -> None:
    result = collapse(["/a/b", "/", "/c"])
    assert dict(result.covered) == {"/a/b": "/", "/c": "/"}
    assert result.to_send == ("/",)


def test_collapse_fifty_thousand_paths() -> None:
    tops = [f"/work/alice/d{i}" for i in range(1000)]
    children = [f"{top}/sub/f{j}" for top in tops[:500] for j in range(48)]  # 24,000 covered
    siblings = [f"{top}x/f" for top in tops]  # "/d1x" is not under "/d1"
    loose = [f"/work/alice/loose/f{k}" for k in range(24_000)]
    paths = children + tops + siblings + loose
    paths = paths + paths[:1000]  # duplicates
    assert len(paths) == 51_000

    result = collapse(paths)

    assert len(result.unique) == 50_000
    assert len(result.covered) == 24_000
    assert all(result.covered[c] == c.rsplit("/", 2)[0] for c in children)
    to_send = result.to_send
    assert len(to_send) == 26_000
    assert to_send[:1000] == tuple(tops)
    assert set(to_send) == set(tops) | set(siblings) | set(loose)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abc"), min_size=1, max_size=4), max_size=25))
def test_collapse_matches_naive_definition(raw: list[list[str]]) -> None:
    paths = ["/" + "/".join(parts) for parts in raw]
    result = collapse(paths)
    expected_unique = tuple(dict.fromkeys(paths))
    assert result.unique == expected_unique
    for path in expected_unique:
        ancestors = [a for a in expected_unique if is_within(path, a)]
        if ancestors:
            assert result.covered[path] == min(ancestors, key=len)
        else:
            assert path not in result.covered
    assert result.to_send == tuple(p for p in expected_unique if p not in result.covered)


# --- properties ------------------------------------------------------------------

PROTECTED_FOLDED = {n.casefold() for n in DEFAULT_PROTECTED}


def _inside_by_components(path: str, root: str) -> bool:
    # Independent of the implementation's string-prefix test on purpose.
    p, r = path.split("/"), root.split("/")
    return len(p) > len(r) and p[: len(r)] == r


def _assert_outcome_is_safe(policy: PathPolicy, path: object) -> None:
    result = policy.check(path)
    if isinstance(result, PathRefusal):
        assert result.code in CODES
        _assert_clean_message(result.message)
        return
    assert isinstance(path, str)
    assert result == path and type(result) is str
    assert any(_inside_by_components(path, root) for root in policy.allowed_roots)
    assert path not in policy.allowed_roots
    components = path.split("/")[1:]
    assert all(c not in (".", "..", "") for c in components)
    assert not any(c.casefold() in PROTECTED_FOLDED for c in components)
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in path)
    assert not any(ch in "\\*?[]" for ch in path)
    assert len(path.encode("utf-8")) <= MAX_PATH_BYTES
    assert all(len(c.encode("utf-8")) <= MAX_NAME_BYTES for c in components)
    for c in components:
        decoded = unquote(c)
        assert decoded not in (".", "..") and "/" not in decoded and "\\" not in decoded and "\x00" not in decoded


TRICKY_ALPHABET = st.one_of(
    st.sampled_from([*list("/\\.%*?[] ~#&$\"'()ab2eEfF5c0"), "\x00", "\n", "\t", "\x7f", "\x85"]),
    st.sampled_from(["\u202e", "\u200b", "\u200d", "\ufeff", "\u2028", "\ud800", "é", "数", "🎉", "\u0301"]),
    st.characters(),
)
SPECIAL_COMPONENTS = st.sampled_from(
    [
        "",
        ".",
        "..",
        "...",
        ".ssh",
        ".SSH",
        ".sSh",
        ".ssh_old",
        ".gnupg",
        ".Bashrc",
        ".profile",
        ".zshrc",
        ".cache",
        "%2e%2e",
        "%2E",
        "%2f",
        "%5C",
        "%00",
        "%252e%252e",
        "100%",
        "a%20b",
        "*",
        "[x]",
        "~",
        " ",
        "x" * 256,
        "数" * 86,
        "alice",
        "scratch",
        "scratchy",
    ]
)
PLAIN_NAME = st.text(st.sampled_from([*list("abcXYZ019 ._-~#%()"), "é", "数", "🎉"]), min_size=1, max_size=12)
TRICKY_NAME = st.one_of(SPECIAL_COMPONENTS, st.text(TRICKY_ALPHABET, max_size=12))
NEAR_ROOTS = ["/public/home/alice", "/work", "/work/alicex", "/public/home/alice/scratchy", "", "/", "//"]


@st.composite
def component(draw: st.DrawFn) -> str:
    # Mostly plain names, so that a good share of built paths is accepted and
    # the acceptance invariants are exercised, not just the refusals.
    return draw(TRICKY_NAME if draw(st.integers(0, 5)) == 0 else PLAIN_NAME)


@st.composite
def built_paths(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(ROOTS if draw(st.booleans()) else NEAR_ROOTS))
    parts = draw(st.lists(component(), max_size=6))
    path = prefix + "".join("/" + p for p in parts)
    if draw(st.integers(0, 3)) == 0:
        path += draw(st.sampled_from(["/", "//", "/..", "/.", "\\", "%2f", "\x00"]))
    return path


# Arbitrary text alone is almost never absolute; anchoring half of it at a root
# gets the random tail past the early checks.
ARBITRARY_TEXT = st.one_of(
    st.text(TRICKY_ALPHABET, max_size=60),
    st.builds(
        lambda root, sep, tail: root + sep + tail,
        st.sampled_from(ROOTS),
        st.sampled_from(["/", "/", ""]),
        st.text(TRICKY_ALPHABET, max_size=40),
    ),
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ARBITRARY_TEXT)
def test_arbitrary_text_is_never_accepted_unsafely(path: str) -> None:
    _assert_outcome_is_safe(POLICY, path)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(built_paths())
def test_built_paths_are_never_accepted_unsafely(path: str) -> None:
    _assert_outcome_is_safe(POLICY, path)


SAFE_NAME_CHARS = st.characters(
    blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp"),
    blacklist_characters="/\\*?[]%",
)
SAFE_NAME = st.text(SAFE_NAME_CHARS, min_size=1, max_size=20).filter(
    lambda n: n not in (".", "..") and n.casefold() not in PROTECTED_FOLDED and len(n.encode()) <= MAX_NAME_BYTES
)


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(ROOTS), st.lists(SAFE_NAME, min_size=1, max_size=8))
def test_every_ordinary_path_inside_a_root_is_accepted_unchanged(root: str, names: list[str]) -> None:
    path = root + "/" + "/".join(names)
    assert POLICY.check(path) is path


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.floats(), st.binary(), st.lists(st.text(max_size=5), max_size=3)))
def test_non_strings_are_refused_cleanly(value: object) -> None:
    result = POLICY.check(value)
    assert isinstance(result, PathRefusal) and result.code == "not_a_string"
    _assert_clean_message(result.message)
