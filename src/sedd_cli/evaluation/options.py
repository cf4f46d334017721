"""The options of `sedd perplexity` and their one check each (#15: one check per fact).

Every option the evaluation entries take from a user is validated here and nowhere else: the
entries (`perplexity`, `generative_perplexity`, the evaluators, `evaluate_blocks` and the
estimator) call these before they load a model or allocate, and the CLI only parses and calls.
Each check raises `SeddError` with a one-line message naming the option.

* ``--mc`` K, time samples per block: an int in [1, MAX_MC] (each is one forward pass per block);
* ``--batch-size``: blocks (bound) or sequences (evaluator) per forward pass, at least 1;
* ``--time-spacing``: one of SPACINGS;
* ``--max-blocks``: None or at least 1;
* ``--split``: train, validation, test, or all (every record of a local file; see protocols);
* ``--num-samples`` (``--generative MODEL``): at least 1.
"""

from __future__ import annotations

from typing import Any

from ..data import SPLITS
from ..data import check_max_blocks as data_check_max_blocks
from ..errors import SeddError

__all__ = [
    "MAX_MC",
    "SPACINGS",
    "SPLIT_CHOICES",
    "check_mc",
    "check_batch_size",
    "check_spacing",
    "check_max_blocks",
    "check_split",
    "check_num_samples",
]

MAX_MC = 10_000  # upper bound on K (--mc): K forward passes per block; the paper reportedly used 1000
SPACINGS = ("sqrt", "uniform")  # time spacing of the K stratified samples (bound.stratified_times)
SPLIT_CHOICES = (*SPLITS, "all")  # all: every record of a local file (nothing held out)


def check_mc(K: Any, name: str = "--mc") -> int:
    """K (``--mc``, time samples per block) as an int in [1, MAX_MC]; SeddError otherwise. `name`
    is the option or key the value came from (the harness adapter's ``model_args`` say ``mc``)."""
    if isinstance(K, bool) or not isinstance(K, int) or not 1 <= K <= MAX_MC:
        raise SeddError(
            f"{name} must be an integer from 1 to {MAX_MC:,} (time samples per block; each is one forward "
            f"pass per block), got {K!r}"
        )
    return K


def check_batch_size(batch_size: Any, name: str = "--batch-size") -> int:
    """``--batch-size`` (blocks or sequences per forward pass) an int of at least 1; SeddError
    otherwise (`name` as in `check_mc`)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SeddError(
            f"{name} must be at least 1 (blocks or sequences per forward pass), got {batch_size!r}"
        )
    return batch_size


def check_spacing(spacing: str) -> str:
    """``--time-spacing`` one of SPACINGS; SeddError otherwise."""
    if spacing not in SPACINGS:
        raise SeddError(f"--time-spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    return spacing


def check_max_blocks(max_blocks: int | None) -> int | None:
    """``--max-blocks`` None (all blocks) or at least 1: the data stage's check, early."""
    data_check_max_blocks(max_blocks, "--max-blocks")
    return max_blocks


def check_split(split: str | None) -> str | None:
    """``--split`` None (the protocol's default) or one of SPLIT_CHOICES; SeddError otherwise.
    Whether ``all`` fits the data set is the protocol's question (`protocols.plan_data`)."""
    if split is not None and split not in SPLIT_CHOICES:
        import difflib

        close = difflib.get_close_matches(str(split), SPLIT_CHOICES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SeddError(f"--split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}{hint}")
    return split


def check_num_samples(num_samples: int) -> int:
    """``--num-samples`` (fresh samples for ``--generative MODEL``) at least 1; SeddError otherwise."""
    if num_samples < 1:
        raise SeddError(f"--num-samples must be at least 1, got {num_samples}")
    return num_samples
