"""The ``sedd`` command line (Typer). One module per command group; heavy imports stay inside
command bodies so that ``sedd --help`` never imports torch."""

from __future__ import annotations

# Each module registers its commands on `app` when imported. Only commands that work are listed.
from . import _register  # noqa: E402,F401
from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point: tune the CPU allocator (opt out: SEDD_MALLOC=default), run."""
    from ..allocator import tune_cpu_allocator

    tune_cpu_allocator()
    app(prog_name="sedd")
