"""The entries `sample` and `infill`: load the model, resolve the options, run the batches, decode.

Options left None come from the model's ``sample:`` settings (`_resolve`); every option is
checked (`checks.py`) before any sampling. All samples of one call draw from one generator
seeded with `seed`, batch after batch, so a split into batches changes nothing but speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from ..config import check_shaping
from ..errors import SeddError
from ..tokenizers import UnencodableText
from .checks import (
    check_batch_size,
    check_num_samples,
    check_precision,
    check_run,
    check_steps,
    check_tokens_per_step,
)
from .decoding import decode_samples, infill_segments
from .driver import StepEvent, generate
from .gaps import Acceptance, compact, fill_lengths, gap_lengths, row_with_lengths
from .network import NetworkCalls
from .predictors import check_predictor
from .results import InfillResult, SampleResult
from .templates import (
    check_variable_gaps,
    fixed_ids,
    gap_law_for,
    gap_layout,
    has_own_pad,
    is_pad_layout,
    pad_tail,
    slots,
)

MAX_ROUNDS = 20  # rounds of drawing [MASK:A-B] fills until enough are kept (a bound A, the data's law)
MAX_OVERDRAW = 32  # a round draws at most this many samples per sample still missing


@dataclass
class _Settings:
    """The resolved options of one call (what `SampleResult` records besides texts and ids)."""

    steps: int
    predictor: str
    num_samples: int
    batch_size: int
    eps: float
    denoise: bool
    precision: str
    temperature: float
    top_p: float
    tokens_per_step: int
    seed: int
    cache: bool = True

    def record(self, calls: NetworkCalls) -> dict[str, Any]:
        """The fields `SampleResult` takes from these settings, and the counted network calls."""
        drop = ("num_samples", "batch_size")  # the result has the samples themselves
        kept = {k: v for k, v in asdict(self).items() if k not in drop}
        return kept | {"nfe": calls.nfe, "rows": calls.rows}


def check_sample_settings(sc: Any) -> None:
    """A config's ``sample:`` section (a model's default sampling settings), checked by the same
    functions as the options, with the keys' names: `sedd train` calls it before training, and
    `sample` / `infill` before they use the settings."""
    check_predictor(sc.predictor, "sample.predictor")
    check_precision(sc.precision, "sample.precision")
    check_steps(sc.steps, "sample.steps")
    check_num_samples(sc.num_samples, "sample.num_samples")
    check_batch_size(sc.batch_size, "sample.batch_size")
    check_tokens_per_step(sc.tokens_per_step, None, "sample.tokens_per_step")


def _resolve(pre: Any, seed: int, cache: bool, **given: Any) -> _Settings:
    """`given` options, None ones from the model's ``sample:`` settings; shaping checked."""
    s = pre.config.sample
    check_sample_settings(s)
    v = {k: getattr(s, k) if val is None else val for k, val in given.items()}
    for k in ("temperature", "top_p"):  # given ones as floats; the model's as they are
        if given[k] is not None:
            v[k] = float(given[k])
    check_shaping(v["temperature"], v["top_p"])
    check_tokens_per_step(v["tokens_per_step"])
    return _Settings(seed=seed, cache=bool(cache), **v)


def _load(source: Any, device: str) -> Any:
    if hasattr(source, "model") and hasattr(source, "graph") and hasattr(source, "tokenizer"):
        return source
    from ..checkpoints import load_pretrained

    return load_pretrained(None if source is None else str(source), device=device)


def _run_batches(
    pre: Any,
    opts: _Settings,
    run_length: int,
    fixed: torch.Tensor | None,
    on_step: Callable[[StepEvent], None] | None,
    gen: torch.Generator | None = None,
    count: int | None = None,
) -> tuple[torch.Tensor, float, NetworkCalls]:
    """All samples ``[count, run_length]`` (default ``num_samples``) in batches of at most
    ``batch_size``, drawn from `gen` (default: a new one seeded with ``seed``); `fixed`
    ``[run_length]`` holds the given ids (-1 = free). Returns ids on the CPU, wall seconds and
    the network calls (`nfe`: the most of any batch; `rows`: summed over the batches)."""
    device = pre.device
    gen = torch.Generator(device=device).manual_seed(int(opts.seed)) if gen is None else gen
    count = opts.num_samples if count is None else count
    check_predictor(opts.predictor)  # before any work
    check_tokens_per_step(opts.tokens_per_step, run_length)
    projector = None
    if fixed is not None:
        fixed_d = fixed.to(device)
        given = fixed_d >= 0  # [L]

        def projector(x: torch.Tensor) -> torch.Tensor:
            return torch.where(given, fixed_d, x)

    start = time.perf_counter()
    chunks, total = [], NetworkCalls()
    for b, first in enumerate(range(0, count, opts.batch_size)):
        n = min(opts.batch_size, count - first)
        calls = NetworkCalls()
        x = generate(
            pre.model, pre.graph, pre.noise, batch_size=n, length=run_length, steps=opts.steps,
            predictor=opts.predictor, eps=opts.eps, denoise=opts.denoise, precision=opts.precision,
            device=device, generator=gen, projector=projector, on_step=on_step, batch_index=b,
            offset=first, temperature=opts.temperature, top_p=opts.top_p, cache=opts.cache,
            tokens_per_step=opts.tokens_per_step, calls=calls,
        )  # fmt: skip
        total = total.beside(calls)
        chunks.append(x.cpu())
    return torch.cat(chunks), time.perf_counter() - start, total


def sample(
    source: Any = None,
    *,
    steps: int | None = None,
    predictor: str | None = None,
    num_samples: int | None = None,
    batch_size: int | None = None,
    length: int | None = None,
    seed: int = 0,
    device: str = "auto",
    eps: float | None = None,
    denoise: bool | None = None,
    precision: str | None = None,
    keep_eos: bool = False,
    on_step: Callable[[StepEvent], None] | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    tokens_per_step: int | None = None,
    cache: bool = True,
) -> SampleResult:
    """Unconditional samples from a model.

    `source`: a run directory, checkpoint, model folder or pretrained id (see
    `checkpoint.load_pretrained`; None = the newest run under ``./runs``), or an already loaded
    `Pretrained`. Options left None come from the model's ``sample`` settings. `length` defaults
    to the model's trained length; for pad-layout models (names) a shorter `length` fixes the
    positions after it to the pad id, so texts have at most `length` tokens.

    `predictor` "first-hitting" (absorbing models) samples exactly in one network call per
    token and ignores `steps`; `tokens_per_step` K > 1 unmasks K tokens per call (approximate).
    `cache` (default on) reuses a time-independent model's output for sequences that did not
    change (same samples, fewer network rows); `nfe` / `rows` report the calls made.
    """
    pre = _load(source, device)
    opts = _resolve(
        pre, seed, cache, steps=steps, predictor=predictor, num_samples=num_samples,
        batch_size=batch_size, eps=eps, denoise=denoise, precision=precision, temperature=temperature,
        top_p=top_p, tokens_per_step=tokens_per_step,
    )  # fmt: skip
    length = pre.config.model.length if length is None else length
    check_run(opts.steps, opts.num_samples, opts.batch_size, length, pre.config.model.length)
    check_precision(opts.precision)
    run_length, fixed = pad_tail(pre, length)
    ids, wall, calls = _run_batches(pre, opts, run_length, fixed, on_step)
    ids = ids[:, :length]
    texts = decode_samples(ids, pre.tokenizer, pad_layout=is_pad_layout(pre), keep_eos=keep_eos)
    return SampleResult(
        texts=texts, ids=ids, wall_s=wall, source=pre.source, length=length, device=str(pre.device),
        **opts.record(calls),
    )  # fmt: skip


def infill(
    source: Any = None,
    *,
    prefix: str | None = None,
    suffix: str | None = None,
    template: str | None = None,
    length: int | None = None,
    steps: int | None = None,
    predictor: str | None = None,
    num_samples: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    device: str = "auto",
    eps: float | None = None,
    denoise: bool | None = None,
    precision: str | None = None,
    keep_eos: bool = False,
    on_step: Callable[[StepEvent], None] | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    tokens_per_step: int | None = None,
    cache: bool = True,
    force: bool = False,
    gap: str | None = None,
    gap_law: str | None = None,
) -> InfillResult:
    """Fill the masked positions of a template, or the gap between a prefix and a suffix.

    Template form (`template`): ``[MASK]`` = one token to fill, ``[MASK:N]`` = N tokens; the text
    in between is tokenized piecewise and kept exactly. Its length is the template's token count
    (`length` may extend it: the extra positions are free, or pad for pad-layout models).
    Prefix/suffix form: the prefix ids at positions ``0..``, the suffix ids ending at ``length - 1``
    (`length` defaults to the model's length). Given tokens are re-imposed before every step
    (the projector), so they never change. Other options as in `sample`.

    ``[MASK:A-B]`` (pad-layout models trained with ``data.insert_pads``; `force` tries any model)
    is B slots whose pads are removed after sampling, so the fill has 0 to B tokens. `gap` ("A-B")
    puts such a gap between `prefix` and `suffix`, the suffix right after it. Drawn samples are
    kept by rejection (`gaps.Acceptance`): never with a fill below A, and with `gap_law="data"`
    (the default for a model trained with pad insertion) with the probability that gives the
    fills the data's law (`sedd_cli.pad_law`); `"model"` keeps the sampler's own law. Samples are
    drawn in rounds until `num_samples` are kept, at most `MAX_ROUNDS`, then a SeddError. With the
    data's law and a temperature or top-p other than 1, the lengths are drawn first at 1 and the
    letters then at the asked shaping (`_lengths_then_letters`).
    """
    pre = _load(source, device)
    opts = _resolve(
        pre, seed, cache, steps=steps, predictor=predictor, num_samples=num_samples,
        batch_size=batch_size, eps=eps, denoise=denoise, precision=precision, temperature=temperature,
        top_p=top_p, tokens_per_step=tokens_per_step,
    )  # fmt: skip
    try:
        row, length, gaps = slots(pre, template, prefix, suffix, length, gap)
    except UnencodableText as exc:  # say which model's vocabulary it was
        raise UnencodableText(f"model {pre.source}: {exc}") from None
    check_variable_gaps(pre, gaps, force)
    law = gap_law_for(pre, gaps, gap_law)
    check_run(opts.steps, opts.num_samples, opts.batch_size, length, pre.config.model.length)
    check_precision(opts.precision)
    run_length, fixed = fixed_ids(pre, row, length)
    pad_id = pre.tokenizer.pad_id if gaps and has_own_pad(pre) else None
    layout = gap_layout(fixed.tolist(), gaps, pad_id)
    accept = Acceptance(gaps, pad_id, law, layout)
    if law is not None and (opts.temperature != 1.0 or opts.top_p != 1.0):
        ids, wall, calls, rounds = _lengths_then_letters(pre, opts, row, length, on_step, accept)
    else:
        ids, wall, calls, rounds = _draw_fills(pre, opts, run_length, fixed, on_step, accept)
    ids = ids[:, :length]
    free = [s is None for s in row]
    drawn = ids
    ids, filled = compact(ids, free, gaps, pad_id)
    if gaps and on_step is not None:  # the last frame: the kept samples with the gaps' pads removed
        on_step(StepEvent(opts.steps + 2, opts.steps, 0.0, 0.0, ids, ids != drawn, phase="final"))
    segments = infill_segments(
        ids, pre.tokenizer, [], pad_layout=is_pad_layout(pre), keep_eos=keep_eos, row_spans=filled
    )
    lengths = fill_lengths(ids, filled, pad_id)
    return InfillResult(
        texts=["".join(s for s, _ in segs) for segs in segments], ids=ids, wall_s=wall,
        source=pre.source, length=length, device=str(pre.device), **opts.record(calls),
        spans=filled, segments=segments, template=template, fill_lengths=lengths, rounds=rounds,
    )  # fmt: skip


def infill_ids(
    source: Any,
    row: Sequence[int | None],
    *,
    steps: int | None = None,
    predictor: str | None = None,
    num_samples: int = 1,
    seed: int = 0,
    device: str = "auto",
    temperature: float | None = None,
    top_p: float | None = None,
    cache: bool = True,
) -> torch.Tensor:
    """`infill` on token ids: `row` holds the given ids and None at the positions to fill (at most
    the model's length; for pad-layout models the positions after it are pads, as in `infill`).
    Returns the filled ids ``[num_samples, len(row)]`` (CPU). Options as in `sample` (None: the
    model's ``sample:`` settings); one generator seeded with `seed` serves the call. The harness
    adapter (`evaluation.harness`) generates with it from token ids it has already cut to fit."""
    pre = _load(source, device)
    opts = _resolve(
        pre, seed, cache, steps=steps, predictor=predictor, num_samples=num_samples, batch_size=None,
        eps=None, denoise=None, precision=None, temperature=temperature, top_p=top_p, tokens_per_step=None,
    )  # fmt: skip
    length = len(row)
    check_run(opts.steps, opts.num_samples, opts.batch_size, length, pre.config.model.length)
    check_precision(opts.precision)
    if all(s is not None for s in row):
        raise SeddError("the row has no free position: nothing to infill")
    run_length, fixed = fixed_ids(pre, list(row), length)
    ids, _, _ = _run_batches(pre, opts, run_length, fixed, None)
    return ids[:, :length]


class FillsMissing(SeddError):
    """Rejection ran out of rounds before enough samples were kept."""


def _lengths_then_letters(
    pre: Any, opts: _Settings, row: list[int | None], length: int, on_step: Any, accept: Acceptance
) -> tuple[torch.Tensor, float, NetworkCalls, int]:
    """Variable gaps with the data's law under a temperature or top-p: (1) draw the fills at
    temperature 1 and top-p 1 with `accept`, so their lengths k follow the data's law; (2) for each
    k drawn, draw the letters again at the asked shaping in a template whose gap i has exactly
    k_i slots, all of them real (``[MASK:k_i-k_i]``, by rejection: the sampler's shaped law given
    those lengths). A length whose letters the shaped sampler keeps too rarely to finish in
    `MAX_ROUNDS` (a long fill at a low temperature, which prefers pads) keeps its stage-1 letters.
    Returns the rows in the B-slot layout of `row` (pads after each fill), so they go through
    `compact` as usual; rounds = stage 1's plus the most any length of stage 2 took."""
    pad_id, gaps = accept.pad_id, accept.gaps
    run_length, fixed = fixed_ids(pre, row, length)
    first, wall, calls, rounds = _draw_fills(
        pre, replace(opts, temperature=1.0, top_p=1.0), run_length, fixed, on_step, accept
    )
    k = gap_lengths(first, gaps, pad_id)  # [N, G]
    out = torch.full_like(first, pad_id)
    more = 0
    for n, vec in enumerate(torch.unique(k, dim=0).tolist()):
        which = torch.nonzero((k == torch.tensor(vec)).all(1)).flatten()  # samples with these lengths
        row_k, gaps_k, src = row_with_lengths(row, gaps, vec, pad_id)
        run_k, fixed_k = fixed_ids(pre, row_k, length)
        sub = replace(opts, num_samples=which.numel(), seed=opts.seed * 1_000_003 + n + 1)
        if not (fixed_k < 0).any():  # every gap empty and nothing else to fill: the row is given
            out[which[:, None], torch.tensor(src)[None]] = fixed_k[: len(src)]
            continue
        acc = Acceptance(gaps_k, pad_id, None, gap_layout(fixed_k.tolist(), gaps_k, pad_id))
        try:
            ids, w, c, r = _draw_fills(pre, sub, run_k, fixed_k, on_step, acc)
        except FillsMissing:  # the shaped sampler (almost) never fills these k slots with letters
            out[which] = first[which]  # so these samples keep their letters from stage 1
            continue
        wall, calls, more = wall + w, calls.beside(c), max(more, r)
        out[which[:, None], torch.tensor(src)[None]] = ids[:, : len(src)]
    return out, wall, calls, rounds + more


def _draw_fills(
    pre: Any, opts: _Settings, run_length: int, fixed: torch.Tensor, on_step: Any, accept: Acceptance
) -> tuple[torch.Tensor, float, NetworkCalls, int]:
    """(ids ``[num_samples, run_length]``, wall seconds, calls, rounds): `_run_batches`; with gaps
    that can reject, rounds of samples each kept with its `accept` probability (a uniform from
    the same generator, so a seed fixes the result) until `num_samples` are kept. A round draws
    the missing count divided by the share kept so far, at most `MAX_OVERDRAW` times it."""
    gen = torch.Generator(device=pre.device).manual_seed(int(opts.seed))
    if not accept.rejects:
        ids, wall, calls = _run_batches(pre, opts, run_length, fixed, on_step, gen)
        return ids, wall, calls, 1
    kept, need, drawn, n_kept = [], opts.num_samples, 0, 0
    wall, calls = 0.0, NetworkCalls()
    for rounds in range(1, MAX_ROUNDS + 1):
        share = max(n_kept / drawn, 1 / MAX_OVERDRAW) if drawn else 1.0
        count = min(-(-need // share) if drawn else need, MAX_OVERDRAW * need)
        ids, w, c = _run_batches(pre, opts, run_length, fixed, on_step, gen, count=int(count))
        wall, calls = wall + w, calls.beside(c)
        u = torch.rand(ids.shape[0], generator=gen, device=pre.device, dtype=torch.float64).cpu()
        good = ids[u < accept(ids)][:need]
        kept.append(good)
        drawn, n_kept, need = drawn + ids.shape[0], n_kept + good.shape[0], need - good.shape[0]
        if need == 0:
            return torch.cat(kept), wall, calls, rounds
    raise FillsMissing(
        f"after {MAX_ROUNDS} rounds, {need} of {opts.num_samples} samples are still missing: only "
        f"{n_kept / drawn:.2%} of the {drawn:,} drawn fills were kept ({accept.why()}): lower A, ask "
        "for fewer samples, use --gap-law model, or train longer with data.insert_pads"
    )
