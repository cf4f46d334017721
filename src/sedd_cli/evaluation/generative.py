"""Generative perplexity: samples scored by an evaluator, both averaging conventions, and entropy.

Samples come as texts, a samples file (`read_samples`) or fresh draws from a sedd model at
temperature 1 and top-p 1 (the model as it is). Per sample i the evaluator gives nll_i over n_i
tokens; reported are mean_i exp(nll_i / n_i) (the reference's gen-PPL), exp(sum_i nll_i / sum_i
n_i), and the unigram token entropy per sample (low entropy flags repetitive samples).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import SeddError
from .evaluators import Evaluator, SampleScore, hf_evaluator, sedd_evaluator
from .options import check_batch_size, check_mc, check_num_samples
from .sample_files import read_samples

__all__ = ["GenerativeResult", "generative_perplexity", "summarize_samples", "unigram_entropy"]


@dataclass
class GenerativeResult:
    """Perplexity of samples under an evaluator, both averaging conventions, and their entropy."""

    mean_sample_perplexity: float  # mean_i exp(nll_i / n_i): the reference's convention
    perplexity: float  # exp(sum_i nll_i / sum_i n_i): exp of the mean token NLL
    nll: float  # mean token NLL (nats)
    entropy: float  # unigram token entropy per sample (nats), averaged over samples
    n_samples: int
    n_tokens: int
    evaluator: str
    samples_from: str
    sample_perplexities: list[float] = field(default_factory=list)
    seconds: float = 0.0
    scored: str = "texts, tokenized by the evaluator"  # what reached the evaluator
    conventions: str = (
        "mean_sample_perplexity = mean over samples of exp(mean token NLL of the sample) (the reference's "
        "gen-PPL); perplexity = exp(total NLL / total tokens)"
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _generate_ids(source: Any, *, num_samples: int, steps: int | None, batch_size: int, seed: int, device):
    """Fresh samples from a sedd model (samplers.generate): (the loaded model, ids [num_samples, L])."""
    from ..checkpoints import Pretrained, load_pretrained
    from ..sampling import generate

    pre = source if isinstance(source, Pretrained) else load_pretrained(source, device=device)
    s = pre.config.sample
    generator = torch.Generator(device=pre.device).manual_seed(seed)
    rows = []
    left = num_samples
    while left > 0:
        b = min(batch_size, left)
        ids = generate(
            pre.model,
            pre.graph,
            pre.noise,
            batch_size=b,
            length=pre.config.model.length,
            steps=s.steps if steps is None else steps,  # 0 is refused by generate, not replaced
            predictor=s.predictor,
            eps=s.eps,
            denoise=s.denoise,
            precision=s.precision,
            device=pre.device,
            generator=generator,
            temperature=1.0,  # the model as it is, whatever its sample.temperature / top_p
            top_p=1.0,
        )
        rows.append(ids.cpu())
        left -= b
    return pre, torch.cat(rows)


def _sample_texts(pre: Any, ids: torch.Tensor) -> list[str]:
    """Sampled ids as text for an evaluator with another vocabulary: end-of-text ids kept (GPT-2
    models: as ``<|endoftext|>``, which a GPT-2 evaluator's tokenizer reads back as its EOS id);
    pads dropped for pad-layout models (one record per row)."""
    pad_layout = pre.config.data.layout == "pad"
    return [pre.tokenizer.decode(row.tolist(), skip_special=pad_layout) for row in ids]


def _generate_texts(source: Any, *, num_samples: int, steps: int | None, batch_size: int, seed: int, device):
    """Fresh samples from a sedd model, decoded by `_sample_texts`: (texts, the model's source)."""
    pre, ids = _generate_ids(
        source, num_samples=num_samples, steps=steps, batch_size=batch_size, seed=seed, device=device
    )
    return _sample_texts(pre, ids), pre.source


def generative_perplexity(
    samples: str | Path | Sequence[str],
    *,
    eval_model: str = "gpt2-large",
    evaluator: Evaluator | None = None,
    num_samples: int = 32,
    steps: int | None = None,
    batch_size: int = 8,
    mc: int = 16,
    seed: int = 0,
    device: str = "auto",
) -> GenerativeResult:
    """Perplexity of samples under an evaluator, with both averaging conventions and entropy.

    `samples`: a list of texts, a samples file (`read_samples`) or a MODEL folder (then
    `num_samples` fresh samples are drawn with ``steps`` sampling steps). `eval_model`: a
    `transformers` causal LM name available locally (``gpt2-large`` as in the paper) or
    ``sedd:PATH`` to score by a sedd model's bound. `evaluator` overrides `eval_model`.

    What is scored (the reference scores the sampled ids, all L of them, EOS included, no BOS):
    fresh samples go to the evaluator as ids when it shares the model's vocabulary
    (``shares_vocabulary``; a GPT-2 evaluator and a GPT-2 model), else as text with end-of-text
    kept (`_sample_texts`); texts and files are tokenized by the evaluator as they are.
    """
    start = time.perf_counter()
    check_batch_size(batch_size)
    if eval_model.startswith("sedd:") and evaluator is None:
        check_mc(mc)  # before samples are drawn or any model is loaded
    texts, origin, pre, ids = _collect_samples(
        samples, num_samples=num_samples, steps=steps, batch_size=batch_size, seed=seed, device=device
    )
    if evaluator is None:
        evaluator = _make_evaluator(eval_model, mc=mc, batch_size=batch_size, seed=seed, device=device)
    if ids is not None:
        scores, scored = _score_fresh(evaluator, pre, ids)
    else:
        scores, scored = evaluator(texts), "texts, tokenized by the evaluator"
    result = summarize_samples(
        scores, evaluator=eval_model, samples_from=origin, seconds=time.perf_counter() - start
    )
    result.scored = scored
    return result


def _collect_samples(
    samples: str | Path | Sequence[str],
    *,
    num_samples: int,
    steps: int | None,
    batch_size: int,
    seed: int,
    device,
) -> tuple[list[str] | None, str, Any, torch.Tensor | None]:
    """(texts, where they came from, the sampled model, its ids): texts for a list or a samples
    file (model and ids None); ids for a MODEL folder (texts None)."""
    if not isinstance(samples, (str, Path)):
        texts = list(samples)
        if not texts:
            raise SeddError("no samples to evaluate")
        return texts, "texts", None, None
    p = Path(samples)
    if p.is_file():
        return read_samples(p), str(p), None, None
    if not p.is_dir():
        raise SeddError(f"{str(p)!r} is neither a samples file nor a model folder")
    check_num_samples(num_samples)
    pre, ids = _generate_ids(
        str(p), num_samples=num_samples, steps=steps, batch_size=batch_size, seed=seed, device=device
    )
    return None, pre.source, pre, ids


def _make_evaluator(eval_model: str, *, mc: int, batch_size: int, seed: int, device: str) -> Evaluator:
    """``sedd:PATH``: a sedd model's bound (`sedd_evaluator`); else a local causal LM (`hf_evaluator`)."""
    if eval_model.startswith("sedd:"):
        return sedd_evaluator(eval_model[5:], mc=mc, seed=seed, device=device)
    return hf_evaluator(eval_model, device=device, batch_size=batch_size)


def _score_fresh(evaluator: Evaluator, pre: Any, ids: torch.Tensor) -> tuple[list[SampleScore], str]:
    """Score fresh samples: as ids when the evaluator shares the model's vocabulary, else as text
    with end-of-text kept (`_sample_texts`). Returns the scores and what was scored, in words."""
    share = getattr(evaluator, "shares_vocabulary", None)
    if share is not None and hasattr(evaluator, "score_ids") and share(pre.tokenizer):
        scored = "the sampled ids as they are (all positions, end-of-text included; as the reference)"
        return evaluator.score_ids(ids.tolist()), scored
    scored = "the samples decoded with end-of-text kept, tokenized by the evaluator"
    return evaluator(_sample_texts(pre, ids)), scored


def summarize_samples(
    scores: Sequence[SampleScore], *, evaluator: str = "", samples_from: str = "", seconds: float = 0.0
) -> GenerativeResult:
    """Both conventions from per-sample scores (samples with no predicted token are skipped)."""
    kept = [s for s in scores if s.n > 0]
    if not kept:
        raise SeddError("every sample is too short to score (needs at least 2 tokens)")
    per_sample = [math.exp(s.nll / s.n) for s in kept]
    total_nll = sum(s.nll for s in kept)
    total_n = sum(s.n for s in kept)
    return GenerativeResult(
        mean_sample_perplexity=sum(per_sample) / len(per_sample),
        perplexity=math.exp(total_nll / total_n),
        nll=total_nll / total_n,
        entropy=sum(unigram_entropy(s.tokens) for s in kept) / len(kept),
        n_samples=len(kept),
        n_tokens=total_n,
        evaluator=evaluator,
        samples_from=samples_from,
        sample_perplexities=per_sample,
        seconds=seconds,
    )


def unigram_entropy(tokens: Sequence[int]) -> float:
    """Entropy (nats) of the empirical token distribution of one sample: -sum_v f_v log f_v."""
    if not tokens:
        return 0.0
    from collections import Counter

    n = len(tokens)
    return -sum(c / n * math.log(c / n) for c in Counter(tokens).values())
