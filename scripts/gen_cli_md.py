"""Generate docs/cli.md from the live ``--help`` of every sedd command.

    python scripts/gen_cli_md.py          # rewrite docs/cli.md
    python scripts/gen_cli_md.py --check  # exit 1 if docs/cli.md is out of date

tests/test_cli_docs.py runs the check, so the page cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

from sedd_cli.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}

HEADER = """# Command reference

Generated from `sedd --help` and `sedd COMMAND --help` by `scripts/gen_cli_md.py`; a test checks
that this page matches the code. Conventions shared by every command:

- results go to **stdout**; progress, live views and logs to **stderr**;
- `--json` prints exactly one JSON document on stdout instead of the human view;
- a mistake you can fix (bad path, option value, mismatched checkpoint, text the tokenizer cannot
  encode) prints one line `error: ...` on stderr and exits with status 1; `SEDD_DEBUG=1` shows the
  traceback;
- `--device auto` picks cuda, then mps, then cpu; `--seed` makes a command repeatable;
- settings resolve as preset < `--config FILE.yaml` < typed options < `--set section.key=value`.
"""


def commands() -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    return list(group.commands)


def help_text(args: list[str]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], prog_name="sedd", env=ENV)
    if result.exit_code != 0:
        raise SystemExit(f"sedd {' '.join(args)} --help failed: {result.output}")
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    return "\n".join(lines).strip("\n")


def render() -> str:
    parts = [HEADER, "## sedd\n", "```text", help_text([]), "```\n"]
    for name in commands():
        parts += [f"## sedd {name}\n", "```text", help_text([name]), "```\n"]
    return "\n".join(parts)


def main() -> None:
    text = render()
    if "--check" in sys.argv:
        if not DOC.is_file() or DOC.read_text() != text:
            print("docs/cli.md is out of date: run python scripts/gen_cli_md.py", file=sys.stderr)
            raise SystemExit(1)
        return
    DOC.write_text(text)


if __name__ == "__main__":
    main()
