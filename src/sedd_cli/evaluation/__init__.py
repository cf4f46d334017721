"""Evaluation: the likelihood bound on held-out text and the generative perplexity of samples.

The stage after sampling (docs/evaluation.md). One module per concept:

* `options`: the options of ``sedd perplexity`` and their one check each (K, batch size, ...);
* `bound`: the estimator of -log p^pi(x0) <= R + D + KL (stratified times, the per-sequence DWDSE
  bound, the t = 0 reconstruction term, the prior KL), the ratio summary with its standard error,
  and what the bound bounds, in words;
* `protocols`: how each evaluation set is read and what counts as a token (pack / pad);
* `blocks`: an evaluation set read into blocks, every block bounded (`evaluate_blocks`);
* `heldout`: the `perplexity()` entry (the bound on held-out text) and its result;
* `evaluators`: scoring texts by another model (a `transformers` causal LM, or a sedd model's bound);
* `generative`: `generative_perplexity()`: samples (texts, a file, or fresh draws) under an evaluator;
* `sample_files`: reading the samples files ``sedd sample --out`` writes;
* `conditional`: the bound on -log p(continuation | context), only the continuation corrupted;
* `greedy`: whether the model's most confident deterministic fill writes a given continuation;
* `rows`: batch-invariant network calls on rows (whole tiles of sequences per pass);
* `requests`, `harness_args`: lm-evaluation-harness requests as rows, the ``model_args``;
* `harness` (not imported here: it needs the ``eval`` extra): the harness model ``sedd``.
"""

from . import (
    blocks,
    bound,
    conditional,
    evaluators,
    generative,
    greedy,
    harness_args,
    heldout,
    options,
    protocols,
    requests,
    sample_files,
)
from .blocks import *  # noqa: F403
from .bound import *  # noqa: F403
from .conditional import *  # noqa: F403
from .evaluators import *  # noqa: F403
from .generative import *  # noqa: F403
from .greedy import *  # noqa: F403
from .harness_args import *  # noqa: F403
from .heldout import *  # noqa: F403
from .options import *  # noqa: F403
from .protocols import *  # noqa: F403
from .requests import *  # noqa: F403
from .sample_files import *  # noqa: F403

__all__ = [
    *options.__all__,
    *bound.__all__,
    *protocols.__all__,
    *blocks.__all__,
    *heldout.__all__,
    *evaluators.__all__,
    *generative.__all__,
    *sample_files.__all__,
    *conditional.__all__,
    *greedy.__all__,
    *requests.__all__,
    *harness_args.__all__,
]
