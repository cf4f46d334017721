"""One check per fact (#15): a validated option's error text has exactly one origin in the library.

`origins(fragment)` lists the ``file:line`` of every string literal under ``src/sedd_cli`` (f-string
constant parts included) that contains `fragment`; `assert_checked_once(fragment)` asserts there is
exactly one and that it is not in ``cli/`` (the CLI parses, calls and renders; the library checks).
Pair it with a run of the command that shows the same text, so the row proves both that the check
exists and that it lives in one place.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "sedd_cli"


@cache
def _literals() -> tuple[tuple[str, int, str], ...]:
    out: list[tuple[str, int, str]] = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(SRC).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append((rel, node.lineno, node.value))
    return tuple(out)


def origins(fragment: str) -> list[str]:
    return [f"{rel}:{line}" for rel, line, text in _literals() if fragment in text]


def assert_checked_once(fragment: str) -> str:
    found = origins(fragment)
    assert len(found) == 1, f"{fragment!r} should have one origin in the library, found {found}"
    where = found[0]
    assert not where.startswith("cli/"), f"{fragment!r} is checked in the CLI ({where}), not the library"
    return where
