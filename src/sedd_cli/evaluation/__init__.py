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
* `sample_files`: reading the samples files ``sedd sample --out`` writes.
"""

from .blocks import BlockBounds, PerplexityStep, evaluate_blocks
from .bound import (
    DECODER_FLOOR,
    T_MIN,
    BoundSummary,
    bound_per_sequence,
    describe_bound,
    prior_kl_per_position,
    reconstruction_term,
    sigma_at_zero,
    stratified_times,
    summarize_bounds,
)
from .evaluators import CausalLMEvaluator, Evaluator, SampleScore, SeddEvaluator, hf_evaluator, sedd_evaluator
from .generative import GenerativeResult, generative_perplexity, summarize_samples, unigram_entropy
from .heldout import PerplexityResult, perplexity
from .options import (
    MAX_MC,
    SPACINGS,
    SPLIT_CHOICES,
    check_batch_size,
    check_max_blocks,
    check_mc,
    check_num_samples,
    check_spacing,
    check_split,
)
from .protocols import PROTOCOLS, DataPlan, Protocol, plan_data, resolve_protocol, token_rule
from .sample_files import read_samples

__all__ = [
    # options and their checks
    "MAX_MC",
    "SPACINGS",
    "SPLIT_CHOICES",
    "check_mc",
    "check_batch_size",
    "check_spacing",
    "check_max_blocks",
    "check_split",
    "check_num_samples",
    # the bound
    "T_MIN",
    "DECODER_FLOOR",
    "stratified_times",
    "bound_per_sequence",
    "sigma_at_zero",
    "reconstruction_term",
    "prior_kl_per_position",
    "BoundSummary",
    "summarize_bounds",
    "describe_bound",
    # protocols
    "PROTOCOLS",
    "Protocol",
    "resolve_protocol",
    "DataPlan",
    "plan_data",
    "token_rule",
    # blocks
    "PerplexityStep",
    "BlockBounds",
    "evaluate_blocks",
    # the perplexity() entry
    "PerplexityResult",
    "perplexity",
    # generative perplexity
    "SampleScore",
    "Evaluator",
    "CausalLMEvaluator",
    "hf_evaluator",
    "SeddEvaluator",
    "sedd_evaluator",
    "GenerativeResult",
    "generative_perplexity",
    "summarize_samples",
    "unigram_entropy",
    "read_samples",
]
