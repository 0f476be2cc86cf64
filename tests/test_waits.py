"""Tests wait on conditions, not on guesses of wall-clock time (issue 15).

A `time.sleep`/`asyncio.sleep` longer than 1 s (or of a computed length) in the test code is a
wait for a state that a loaded machine can outlast — flaky — or a test made slow for nothing.
The only exceptions measure or simulate real time on purpose, and say so in a comment on the
call's line or the line above containing MARKER.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
MARKER = "real time on purpose"
LIMIT_SECONDS = 1.0


def _sleeps(tree: ast.AST) -> list[ast.Call]:
    def is_sleep(func: ast.expr) -> bool:
        return (isinstance(func, ast.Attribute) and func.attr == "sleep") or (
            isinstance(func, ast.Name) and func.id == "sleep"
        )

    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and is_sleep(n.func)]


def _too_long(call: ast.Call) -> bool:
    if not call.args:
        return False
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, int | float):
        return float(arg.value) > LIMIT_SECONDS
    return True  # a computed length: it may be anything


def offences(source: str) -> list[int]:
    """Line numbers of unmarked sleeps longer than LIMIT_SECONDS (or of computed length)."""
    lines = source.splitlines()
    found = []
    for call in _sleeps(ast.parse(source)):
        if not _too_long(call):
            continue
        here = lines[call.lineno - 1]
        above = lines[call.lineno - 2] if call.lineno > 1 else ""
        if MARKER not in here and MARKER not in above:
            found.append(call.lineno)
    return sorted(found)


def test_the_rule_catches_what_it_should() -> None:
    source = "\n".join(
        [
            "import asyncio, time",
            "time.sleep(0.1)",  # a poll interval: fine
            "time.sleep(1.5)",  # 3: a wait for a state
            "await asyncio.sleep(2)",  # 4
            "time.sleep(delay)",  # 5: computed
            "time.sleep(5)  # real time on purpose: the idle rate over 5 s",
            "# real time on purpose: longer than stepSeconds",
            "time.sleep(2.5)",
        ]
    )
    wrapped = "async def f():\n" + "\n".join("    " + line for line in source.splitlines())
    assert offences(wrapped) == [4, 5, 6]


def test_no_test_waits_on_wall_clock_time() -> None:
    bad = []
    for path in sorted(TESTS.rglob("*.py")):
        for line in offences(path.read_text()):
            bad.append(f"{path.relative_to(TESTS.parent)}:{line}")
    assert not bad, (
        f"sleeps longer than {LIMIT_SECONDS:g} s (or of computed length) as waits: {bad}; wait "
        "on a condition instead (tests/polling.py, tests/integration/harness.py wait_for/settled),"
        f" or, where the test measures real time on purpose, say so: '# {MARKER}: why'"
    )
