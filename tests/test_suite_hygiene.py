"""Time is an input in this suite: no test waits a fixed time to show that nothing more happens, and none
asserts on the wall clock, unless it is marked `realtime` (a feature that *is* real time, checked apart).

Read from the tests' source (ast), so a new fixed wait fails here with its file and line:
- `sleep(x)` with x not 0 is allowed only inside a polling loop (`while`/`for`: waiting *for* something,
  with a deadline); a fake that never answers uses `anyio.sleep_forever()`;
- an `assert` that reads `time.monotonic()` or `time.perf_counter()` (elapsed time) is allowed only inside a
  loop (a poll's deadline).
The alternatives are in docs/CONTRIBUTING.md: tests/clocks.py, conftest.HeldRequest, the sandbox's hooks.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: Readings that measure elapsed time (a date from time.time() is an input, e.g. an expiry, and is fine).
CLOCK_READS = {"monotonic", "perf_counter"}
LOOPS = (ast.While, ast.For, ast.AsyncFor)
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _called(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _is_realtime(function: ast.AST) -> bool:
    return isinstance(function, FUNCTIONS) and any("realtime" in ast.unparse(d) for d in function.decorator_list)


def _fixed_sleep(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Call) and _called(node) == "sleep"):
        return False
    return not (node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == 0)


def _clock_assert(node: ast.AST) -> bool:
    return isinstance(node, ast.Assert) and any(
        isinstance(inner, ast.Call) and _called(inner) in CLOCK_READS and isinstance(inner.func, ast.Attribute)
        for inner in ast.walk(node.test)
    )


def waits_in(path: Path) -> list[str]:
    """`file:line  code` for every fixed wait or wall-clock assertion outside a loop and a realtime test."""
    found: list[str] = []

    def visit(node: ast.AST, in_loop: bool, realtime: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_loop = (in_loop and not isinstance(child, FUNCTIONS)) or isinstance(child, LOOPS)
            child_realtime = realtime or _is_realtime(child)
            if not in_loop and not realtime and (_fixed_sleep(child) or _clock_assert(child)):
                found.append(f"{path.name}:{getattr(child, 'lineno', '?')}  {ast.unparse(child)[:100]}")
            visit(child, child_loop, child_realtime)

    visit(ast.parse(path.read_text(encoding="utf-8")), False, False)
    return found


def test_no_test_waits_a_fixed_time_or_asserts_on_the_wall_clock() -> None:
    found = [line for path in sorted(TESTS.rglob("*.py")) for line in waits_in(path)]
    assert found == [], (
        "move a clock, hold a request or wait for an event instead (docs/CONTRIBUTING.md):\n" + "\n".join(found)
    )


def test_the_check_sees_a_fixed_wait_a_clock_assertion_and_spares_polls_and_realtime_tests(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import time, anyio, pytest\n"
        "async def test_waits():\n"
        "    await anyio.sleep(1.5)\n"  # flagged
        "    started = time.monotonic()\n"
        "    assert time.monotonic() - started < 4\n"  # flagged
        "async def fake(context, params):\n"
        "    time.sleep(10)\n"  # flagged: a fake that waits
        "async def test_polls():\n"
        "    while True:\n"
        "        assert time.monotonic() < 99\n"
        "        await anyio.sleep(0.05)\n"
        "    await anyio.sleep(0)\n"
        "    await anyio.sleep_forever()\n"
        "@pytest.mark.realtime\n"
        "async def test_real():\n"
        "    await anyio.sleep(1)\n"
        "    assert time.monotonic() > 0\n",
        encoding="utf-8",
    )
    assert [line.split()[0] for line in waits_in(sample)] == [
        "test_sample.py:3",
        "test_sample.py:5",
        "test_sample.py:7",
    ]
