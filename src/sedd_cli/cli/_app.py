"""The Typer app, shared option types and the error handling every command uses.

Conventions (docs/cli.md): results on stdout, progress and live views on stderr; ``--json``
prints one JSON document on stdout instead of the human view; a user error prints one line
``error: ...`` on stderr and exits with status 1 (``SEDD_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import SeddError

app = typer.Typer(
    name="sedd",
    help=(
        "Score Entropy Discrete Diffusion text models: tokenize, corrupt, train, sample, infill "
        "and evaluate.\n\nRun [bold]sedd COMMAND --help[/bold] for the options and examples of a command."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# --- shared options (same meaning in every command) ---------------------------------------------

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of the human view.")
]


def _seed(value: int | None) -> int | None:
    """--seed within what the seeding accepts ([0, 2**63 - 1]; the library's one check)."""
    if value is None:
        return value
    from ..config import check_seed
    from ..errors import SeddError

    try:
        return check_seed(value)
    except SeddError as exc:
        raise fail(str(exc)) from None


SeedOpt = Annotated[
    int,
    typer.Option(
        "--seed", help="Random seed in [0, 2**63 - 1]; the same seed gives the same result.", callback=_seed
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option("--device", help="auto (cuda, then mps, then cpu) | cpu | cuda | mps.", show_default=True),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="YAML file of settings (sections model, graph, noise, data, train, sample)."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one setting, e.g. --set train.lr=3e-4 (repeatable; applied last)."),
]


def examples(*lines: str) -> str:
    """A help epilog listing example command lines."""
    body = "\n\n".join(f"  [green]{line}[/green]" for line in lines)
    return f"[bold]Examples[/bold]\n\n{body}"


def command(name: str, *, help_examples: tuple[str, ...] = (), **kwargs: Any) -> Callable:
    """Register `fn` as ``sedd NAME`` with examples in its help and the shared error handling."""

    def decorate(fn: Callable) -> Callable:
        wrapped = handle_errors(fn)
        doc = " ".join((fn.__doc__ or "").split("\n\n")[0].split())
        kwargs.setdefault("short_help", doc.split(". ")[0].rstrip(".") if doc else None)
        app.command(name, epilog=examples(*help_examples) if help_examples else None, **kwargs)(wrapped)
        return wrapped

    return decorate


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def handle_errors(fn: Callable) -> Callable:
    """Turn user errors into one line on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SeddError as exc:
            if os.environ.get("SEDD_DEBUG"):
                raise
            raise fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        except KeyboardInterrupt:
            if os.environ.get("SEDD_DEBUG"):
                raise
            raise fail("interrupted", 130) from None
        except OSError as exc:  # a file the command could not read or write (the library names most)
            if os.environ.get("SEDD_DEBUG") or isinstance(exc, BrokenPipeError):
                raise
            raise fail(_os_error_line(exc)) from None

    return wrapper


def _os_error_line(exc: OSError) -> str:
    """One line for an OSError: what failed and on which file (with the free space for a full disk)."""
    import errno

    if exc.filename is not None and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        from ..runtime import write_error

        return str(write_error(exc.filename, exc))
    what = exc.strerror or str(exc) or type(exc).__name__
    return f"{what}: {str(exc.filename)!r}" if exc.filename is not None else what


def print_json(obj: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(json.dumps(obj, ensure_ascii=False, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def read_text_arg(text: str) -> str:
    """A TEXT argument: ``-`` reads standard input, which must be UTF-8 (one line naming the byte
    offset of the first byte that is not)."""
    if text != "-":
        return text
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text stream without bytes underneath (tests, embedding)
        return sys.stdin.read()
    raw = stream.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        from ..config import not_utf8

        raise not_utf8("standard input", exc, ": pass text, not a binary file") from None
