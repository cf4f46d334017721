"""The entries `sample` and `infill`: load the model, resolve the options, run the batches, decode.

Options left None come from the model's ``sample:`` settings (`_resolve`); every option is
checked (`checks.py`) before any sampling. All samples of one call draw from one generator
seeded with `seed`, batch after batch, so a split into batches changes nothing but speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
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
from .gaps import compact, fill_lengths, short
from .network import NetworkCalls
from .predictors import check_predictor
from .results import InfillResult, SampleResult
from .templates import Gap, check_variable_gaps, fixed_ids, is_pad_layout, pad_tail, slots

MAX_ROUNDS = 20  # rounds of re-sampling the fills shorter than a [MASK:A-B] gap's A


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
        total = NetworkCalls(max(total.nfe, calls.nfe), total.rows + calls.rows)
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
) -> InfillResult:
    """Fill the masked positions of a template, or the gap between a prefix and a suffix.

    Template form (`template`): ``[MASK]`` = one token to fill, ``[MASK:N]`` = N tokens; the text
    in between is tokenized piecewise and kept exactly. Its length is the template's token count
    (`length` may extend it: the extra positions are free, or pad for pad-layout models).
    Prefix/suffix form: the prefix ids at positions ``0..``, the suffix ids ending at ``length - 1``
    (`length` defaults to the model's length). Given tokens are re-imposed before every step
    (the projector), so they never change. Other options as in `sample`.

    ``[MASK:A-B]`` (pad-layout models trained with ``data.insert_pads``; `force` tries any model)
    is B slots whose pads are removed after sampling, so the fill has 0 to B tokens; samples with
    a fill shorter than A are drawn again, at most `MAX_ROUNDS` rounds, then a SeddError.
    """
    pre = _load(source, device)
    opts = _resolve(
        pre, seed, cache, steps=steps, predictor=predictor, num_samples=num_samples,
        batch_size=batch_size, eps=eps, denoise=denoise, precision=precision, temperature=temperature,
        top_p=top_p, tokens_per_step=tokens_per_step,
    )  # fmt: skip
    try:
        row, length, gaps = slots(pre, template, prefix, suffix, length)
    except UnencodableText as exc:  # say which model's vocabulary it was
        raise UnencodableText(f"model {pre.source}: {exc}") from None
    check_variable_gaps(pre, gaps, force)
    check_run(opts.steps, opts.num_samples, opts.batch_size, length, pre.config.model.length)
    check_precision(opts.precision)
    run_length, fixed = fixed_ids(pre, row, length)
    ids, wall, calls, rounds = _draw_fills(pre, opts, run_length, fixed, on_step, gaps)
    ids = ids[:, :length]
    free = [s is None for s in row]
    pad_id = pre.tokenizer.pad_id if gaps else None
    ids, filled = compact(ids, free, gaps, pad_id)
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


def _draw_fills(
    pre: Any, opts: _Settings, run_length: int, fixed: torch.Tensor, on_step: Any, gaps: list[Gap]
) -> tuple[torch.Tensor, float, NetworkCalls, int]:
    """(ids ``[num_samples, run_length]``, wall seconds, calls, rounds): `_run_batches`, then the
    samples with a gap filled below its A drawn again from the same generator, at most
    `MAX_ROUNDS` rounds (rejection: the kept samples follow the sampler's law given every A)."""
    gen = torch.Generator(device=pre.device).manual_seed(int(opts.seed))
    ids, wall, calls = _run_batches(pre, opts, run_length, fixed, on_step, gen)
    pad_id = pre.tokenizer.pad_id
    if not any(g.least > 0 for g in gaps) or pad_id is None:
        return ids, wall, calls, 1
    for rounds in range(1, MAX_ROUNDS + 1):
        bad = torch.nonzero(short(ids, gaps, pad_id)).flatten()
        if bad.numel() == 0:
            return ids, wall, calls, rounds
        if rounds == MAX_ROUNDS:
            break
        more, w, c = _run_batches(pre, opts, run_length, fixed, on_step, gen, count=bad.numel())
        ids[bad] = more
        wall, calls = wall + w, NetworkCalls(max(calls.nfe, c.nfe), calls.rows + c.rows)
    least = max(gaps, key=lambda g: g.least)
    raise SeddError(
        f"after {MAX_ROUNDS} rounds, {bad.numel()} of {ids.shape[0]} samples still fill a gap below its "
        f"least count (e.g. {least.text}): lower A, or train longer with data.insert_pads"
    )
