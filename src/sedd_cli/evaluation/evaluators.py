"""Evaluators for generative perplexity: score texts (or ids) by another model.

An evaluator maps texts to `SampleScore`s (tokens, summed NLL in nats, tokens covered). Two kinds:
`CausalLMEvaluator` (a `transformers` causal LM, GPT-2 large as in the paper; long samples in
strided windows) and `SeddEvaluator` (a sedd model's likelihood bound: zero downloads). Both have
``score_ids`` and ``shares_vocabulary``: when the sampled model's tokenizer gives the evaluator's
ids (the tokenizer-identity probe), sampled ids are scored as they are, as the reference does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import SeddError
from .blocks import evaluate_blocks
from .options import check_batch_size, check_mc

__all__ = ["SampleScore", "Evaluator", "CausalLMEvaluator", "hf_evaluator", "SeddEvaluator", "sedd_evaluator"]


@dataclass
class SampleScore:
    """One sample as scored by an evaluator: its tokens (the evaluator's tokenization), the summed
    negative log-likelihood (nats) and the number of tokens it covers."""

    tokens: list[int]
    nll: float
    n: int


Evaluator = Callable[[Sequence[str]], list[SampleScore]]


Evaluator = Callable[[Sequence[str]], list[SampleScore]]


def _no_evaluator(name: str) -> SeddError:
    return SeddError(
        f"no evaluator: pip install transformers and make the weights of {name} available locally, "
        "or use --eval-model sedd:PATH to score with a sedd model's bound"
    )


_PROBE = "Hello world, it's 2024: <ids> and café ü.\n  Tabs\tand spaces"  # tokenizer-identity probe


def _windows(n: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows (begin, end, first) over n ids for an evaluator of `context` positions: the ids
    [begin, end) go in, and the predictions of ids first..end-1 are kept, so every id but id 0 is
    predicted exactly once. n <= context: one window (0, n, 1). Longer: windows start every `stride`
    ids and each keeps only the ids the previous one did not reach, so every kept prediction sees at
    least context - stride ids of context (the strided evaluation of transformers' perplexity guide)."""
    if n <= context:
        return [(0, n, 1)]
    out, prev_end, begin = [], 1, 0
    while True:
        end = min(begin + context, n)
        out.append((begin, end, max(prev_end, begin + 1)))
        if end == n:
            return out
        prev_end, begin = end, begin + stride


class CausalLMEvaluator:
    """Scores texts (or ids) by an autoregressive `transformers` model, fp32, eval mode, no_grad.

    As the reference (sedd-spec §6.2): no BOS is prepended and the logits at positions 0..n-2 score
    ids 1..n-1, so a sample of n ids contributes n - 1 predictions. Samples longer than the model's
    context (``n_positions``) are scored in strided windows (`_windows`, stride context // 2), so
    no id is dropped and none is scored twice. Windows are batched `batch_size` at a time
    (right-padded; padded positions never enter the sum)."""

    def __init__(
        self,
        lm: Any,
        tokenizer: Any,
        *,
        device: torch.device | str = "cpu",
        batch_size: int = 8,
        name: str = "",
        context: int | None = None,
        stride: int | None = None,
    ):
        check_batch_size(batch_size)
        self.lm, self.tok, self.device = lm, tokenizer, torch.device(device)
        self.batch_size, self.name = batch_size, name
        if context is None:
            cfg = getattr(lm, "config", None)
            context = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        if context is None or context < 2:
            raise SeddError(f"evaluator {name or type(lm).__name__}: cannot tell its context length")
        self.context = int(context)
        self.stride = int(stride or max(self.context // 2, 1))
        if not 1 <= self.stride < self.context:
            raise ValueError(f"stride must be in [1, context), got {self.stride}")
        self.forward_batches: list[int] = []  # windows per forward pass, in order (for tests and timing)

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, verbose=False)["input_ids"])

    def shares_vocabulary(self, tokenizer: Any) -> bool:
        """True when `tokenizer` (a sedd tokenizer) gives the same ids as the evaluator's: same
        vocabulary size, same end-of-text id, same ids for a probe text. Then sampled ids are scored
        as they are, as the reference does, instead of being decoded and re-tokenized."""
        try:
            size = len(self.tok)
        except TypeError:
            return False
        if size != tokenizer.vocab_size or getattr(self.tok, "eos_token_id", None) != tokenizer.eos_id:
            return False
        try:
            return self.encode(_PROBE) == list(tokenizer.encode(_PROBE))
        except Exception:  # a sedd tokenizer that cannot encode the probe (char vocabularies)
            return False

    def __call__(self, texts: Sequence[str]) -> list[SampleScore]:
        return self.score_ids([self.encode(t) for t in texts])

    @torch.no_grad()
    def score_ids(self, rows: Sequence[Sequence[int]]) -> list[SampleScore]:
        rows = [list(map(int, r)) for r in rows]
        jobs = []  # (sample index, begin, end, first)
        for i, ids in enumerate(rows):
            if len(ids) >= 2:
                jobs += [(i, *w) for w in _windows(len(ids), self.context, self.stride)]
        jobs.sort(key=lambda j: j[2] - j[1], reverse=True)  # similar lengths share a batch
        nll = [0.0] * len(rows)
        count = [0] * len(rows)
        for lo in range(0, len(jobs), self.batch_size):
            chunk = jobs[lo : lo + self.batch_size]
            per_window = self._score_windows(rows, chunk)
            self.forward_batches.append(len(chunk))
            for r, (i, _begin, end, first) in enumerate(chunk):
                nll[i] += float(per_window[r])
                count[i] += end - first
        return [SampleScore(rows[i], nll[i], count[i]) for i in range(len(rows))]

    def _score_windows(self, rows: list[list[int]], chunk: list[tuple[int, int, int, int]]) -> torch.Tensor:
        """One forward pass over the windows `chunk` (right-padded): the summed NLL of each window's
        kept predictions, ``[len(chunk)]`` float64 on the CPU."""
        fill = getattr(self.tok, "eos_token_id", None) or 0
        width = max(end - begin for _, begin, end, _ in chunk)
        ids = torch.full((len(chunk), width), fill, dtype=torch.long)
        keep = torch.zeros(len(chunk), width, dtype=torch.bool)  # targets whose prediction counts
        attn = torch.zeros(len(chunk), width, dtype=torch.long)
        for r, (i, begin, end, first) in enumerate(chunk):
            ids[r, : end - begin] = torch.tensor(rows[i][begin:end])
            attn[r, : end - begin] = 1
            keep[r, first - begin : end - begin] = True
        ids, keep, attn = ids.to(self.device), keep.to(self.device), attn.to(self.device)
        logits = self.lm(input_ids=ids, attention_mask=attn).logits[:, :-1].float()  # [b, w-1, V]
        ce = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), ids[:, 1:], reduction="none"
        )  # [b, w-1]: position p predicts id p + 1
        return (ce * keep[:, 1:]).double().sum(dim=1).cpu()


def hf_evaluator(name: str = "gpt2-large", *, device: str = "auto", batch_size: int = 8) -> CausalLMEvaluator:
    """A `CausalLMEvaluator` for the causal LM `name` (`transformers`, local files only)."""
    try:
        import transformers  # noqa: F401
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise _no_evaluator(name) from None
    from ..runtime import pick_device

    check_batch_size(batch_size)  # before the weights are loaded
    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
        lm = AutoModelForCausalLM.from_pretrained(name, local_files_only=True)
    except Exception:  # OSError / ValueError when the files are not in the local cache
        raise _no_evaluator(name) from None
    dev = pick_device(device)
    lm = lm.to(dev).float().eval()
    return CausalLMEvaluator(lm, tok, device=dev, batch_size=batch_size, name=name)


class SeddEvaluator:
    """Scores texts by a sedd model's bound (zero downloads): each text is encoded with the model's
    tokenizer and scored at the model length: pad layout right-pads with the pad id (pads do not
    count); pack layout cuts to the model length (shorter samples are scored at their own length)."""

    def __init__(self, pre: Any, *, mc: int, batch_size: int, seed: int):
        self.pre, self.mc, self.batch_size, self.seed = (
            pre,
            mc,
            batch_size,
            seed,
        )  # checked by evaluate_blocks

    def shares_vocabulary(self, tokenizer: Any) -> bool:
        return tokenizer.to_dict() == self.pre.tokenizer.to_dict()

    def __call__(self, texts: Sequence[str]) -> list[SampleScore]:
        try:
            rows = [self.pre.tokenizer.encode(t) for t in texts]
        except SeddError as exc:
            raise SeddError(f"the sedd evaluator's tokenizer cannot encode a sample: {exc}") from None
        return self.score_ids(rows)

    def score_ids(self, rows: Sequence[Sequence[int]]) -> list[SampleScore]:
        pre = self.pre
        tok, L = pre.tokenizer, pre.config.model.length
        layout = pre.config.data.layout
        encoded = [list(r)[:L] for r in rows]
        out: list[SampleScore | None] = [None] * len(encoded)
        groups: dict[int, list[int]] = {}
        if layout == "pad" and tok.pad_id is not None:
            padded = [ids + [tok.pad_id] * (L - len(ids)) for ids in encoded]
            groups = {L: list(range(len(padded)))}
        else:
            padded = encoded
            for i, ids in enumerate(padded):
                groups.setdefault(len(ids), []).append(i)
        for length, idx in sorted(groups.items()):
            if length == 0:
                for i in idx:
                    out[i] = SampleScore([], 0.0, 0)
                continue
            tokens = torch.tensor([padded[i] for i in idx], dtype=torch.long)
            res = evaluate_blocks(
                pre.model,
                pre.graph,
                pre.noise,
                tokens,
                layout=layout,
                pad_id=tok.pad_id,
                mc=self.mc,
                batch_size=self.batch_size,
                seed=self.seed,
                device=pre.device,
            )
            for j, i in enumerate(idx):
                out[i] = SampleScore(encoded[i], float(res.bounds[j]), int(res.counts[j]))
        return out  # type: ignore[return-value]


def sedd_evaluator(
    source: Any, *, mc: int = 16, batch_size: int = 32, seed: int = 0, device: str = "auto"
) -> SeddEvaluator:
    """A `SeddEvaluator` for the model `source` (a MODEL path or a loaded `Pretrained`)."""
    from ..checkpoints import Pretrained, load_pretrained

    check_mc(mc)  # before the model is loaded
    check_batch_size(batch_size)
    pre = source if isinstance(source, Pretrained) else load_pretrained(source, device=device)
    return SeddEvaluator(pre, mc=mc, batch_size=batch_size, seed=seed)
