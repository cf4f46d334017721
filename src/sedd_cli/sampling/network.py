"""How the sampler calls the score network and the noise schedule, and how it counts the calls.

`model(x, sigma)` returns log-scores ``[B, L, D]`` at total noise ``sigma`` ``[B]`` (float32, one
per sequence). Models with `features` + `head_logits` (`SEDD`) also give the output head on chosen
rows only, over the ``V`` real-token columns: the absorbing fast path uses that.

Time-independent models (``model.time_conditioned`` False, RADD) give the conditional
``log c [N, V]`` = log p(x0 = j | unmasked tokens) on chosen rows (`condition_rows`); their
log-score is ``log c - log(e^sigma - 1)``. **Batch invariance**: a matrix product's row can round
differently depending on how many rows the product has (a BLAS computes full tiles of rows with
one kernel and the leftover rows with another; on this project's CPUs rows of products with fewer
than 12 rows, or a number not a multiple of 4, came out different in the last bit). So that the
cached sampler (`caching.py`) gets bit for bit the values the uncached one gets,
`condition_rows` runs the trunk on a batch padded to a multiple of 16 rows (sequences x
positions) and the head on rows padded to a multiple of 16; the padding rows are dropped.

`NetworkCalls` counts network calls (`nfe`) and the sequence rows they ran (`rows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..graph import log_esigm1
from ..noise import Noise

PAD_ROWS = 16  # products run on a multiple of this many rows (module docstring)


@dataclass
class NetworkCalls:
    """Network calls (`nfe`) and the sequence rows they ran (`rows`); without a cache every call
    runs the whole batch, so ``rows = batch * nfe``."""

    nfe: int = 0
    rows: int = 0

    def add(self, rows: int) -> None:
        self.nfe += 1
        self.rows += int(rows)

    def merge(self, other: NetworkCalls) -> None:
        self.nfe += other.nfe
        self.rows += other.rows

    def beside(self, other: NetworkCalls) -> NetworkCalls:
        """The calls of two runs side by side (batches, rounds): `nfe` the most of either (what
        one sample waited for), `rows` summed (the work)."""
        return NetworkCalls(max(self.nfe, other.nfe), self.rows + other.rows)


def sigma_at(noise: Noise, t: float) -> tuple[float, float]:
    """(sigma(t), dsigma(t)) as Python floats, computed in float64 on the CPU (no device sync)."""
    sigma, dsigma = noise(torch.tensor(t, dtype=torch.float64))
    return float(sigma), float(dsigma)


def time_independent(model: Any) -> bool:
    """Whether `model` is a time-independent absorbing network (its output depends on x only)."""
    return getattr(model, "time_conditioned", True) is False


def log_score(model: Any, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Log-score ``[B, L, D]`` at total noise `sigma` (float32 sigma per sequence)."""
    return model(x, torch.full((x.shape[0],), sigma, device=x.device, dtype=torch.float32))


def score(model: Any, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The score ``[B, L, D]`` (exp of the log-score, in float32) at total noise `sigma`."""
    return log_score(model, x, sigma).float().exp()


def _pad_to(t: torch.Tensor, multiple: int) -> torch.Tensor:
    """`t` with copies of its first row appended up to a multiple of `multiple` rows."""
    extra = -t.shape[0] % multiple
    return t if extra == 0 else torch.cat([t, t[:1].expand(extra, *t.shape[1:])])


def condition_rows(model: Any, x: torch.Tensor, idx: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Time-independent `model`: log c ``[N, V]`` at the positions `idx` (a nonzero() tuple) of
    `x` ``[B, L]``, computed batch-invariantly (module docstring): the trunk on `x` padded to
    whole multiples of 16 rows, the head (`head_log_condition`) on the N rows padded likewise.
    Models without `features` use `log_condition(x)` at those rows."""
    if not hasattr(model, "features"):
        return model.log_condition(x)[idx]
    per = PAD_ROWS // math.gcd(x.shape[1], PAD_ROWS)  # sequences per whole multiple of 16 rows
    a = model.features(_pad_to(x, per))  # [B', L, d]
    rows = a[idx]  # [N, d]
    return model.head_log_condition(_pad_to(rows, PAD_ROWS))[: rows.shape[0]]


def masked_rows_logits(model: Any, x: torch.Tensor, sigma: float, idx: tuple[torch.Tensor, ...], V: int):
    """At the masked positions `idx` (a nonzero() tuple): the token log-weights ``z [N, V]`` and
    ``offset [N]`` with log score_j = z_j - offset for j < V (the mask column is the current
    token, score 1). Uses `features` + `head_logits` (head on these rows, real columns only) when
    the model has them, else the rows of the full output. A time-independent model gives
    ``z = log c`` (`condition_rows`) and ``offset = log(e^sigma - 1)``."""
    sig = torch.full((x.shape[0],), sigma, device=x.device, dtype=torch.float32)
    if time_independent(model):
        return condition_rows(model, x, idx), log_esigm1(sig[idx[0]])
    if hasattr(model, "head_logits") and hasattr(model, "features"):
        a = model.features(x, sig)  # [B, L, d]
        return model.head_logits(a[idx], sig[idx[0]], columns=V)
    log_s = model(x, sig)[idx]  # [N, D]
    return log_s[:, :V], torch.zeros(idx[0].numel(), dtype=torch.float32, device=x.device)


def event_logits(
    model: Any, x: torch.Tensor, sigma: torch.Tensor | None, idx: tuple[torch.Tensor, torch.Tensor], V: int
) -> torch.Tensor:
    """Token log-weights ``[N, V]`` (up to a per-row constant) at the positions `idx` of `x`
    ``[B, L]``: the conditional log c of a time-independent model (`sigma` unused), else the
    log-score at the per-sequence total noise `sigma` ``[B]`` (float32), whose offset cancels when
    a row is normalised. The output head runs on these N rows only where the model allows it."""
    if time_independent(model):
        if hasattr(model, "features"):
            return model.head_log_condition(model.features(x)[idx])
        return model.log_condition(x)[idx]
    if hasattr(model, "head_logits") and hasattr(model, "features"):
        return model.head_logits(model.features(x, sigma)[idx], sigma[idx[0]], columns=V)[0]
    return model(x, sigma)[idx][:, :V]
