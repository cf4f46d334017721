"""Network calls on rows of sequences, batch-invariant: a row's number never depends on its neighbours.

A matrix product's row can round differently depending on how many rows the product has (see
`sampling.network`: a BLAS computes full tiles of rows with one kernel and the leftovers with
another; here a product of fewer than 4 sequences came out different in the last bit from the
same sequence among 16). The conditional bound and the greedy fill (`conditional`, `greedy`)
promise that a request's number does not depend on the requests it shares a forward pass with,
so every pass here runs on a whole multiple of `PAD_ROWS` sequences (the last pass of a call is
filled up with copies of its first row, whose results are dropped), and the output head runs on
its selected rows padded the same way. On a GPU the kernels a library picks can still depend on
the shapes; there the figures agree to the rounding of the products.

Per-row quantities (each row a sequence ``x0`` with its corrupted copy ``xt``):

* `dwdse_rows`: sum over the row's corrupted region of dsigma * score entropy (nats, float64);
  for the absorbing graph only masked positions contribute (exactly 0 elsewhere), and the head
  runs on the masked rows only when the model has ``features`` + ``head_logits``;
* `lambda_rows`: -sum over masked positions of log c[x0] / lambda, the lambda-form sample of a
  time-independent model (`losses.lambda_dce_loss` on given draws);
* `in_passes`: run a per-row function over N rows in passes of a whole number of tiles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..graph import Absorbing, Graph
from ..sampling.network import PAD_ROWS, time_independent

__all__ = [
    "PAD_ROWS",
    "pass_rows",
    "in_passes",
    "padded",
    "trunk",
    "dwdse_rows",
    "lambda_rows",
    "token_logits",
]


def pass_rows(batch_size: int) -> int:
    """Sequences per forward pass: `batch_size` rounded up to a whole multiple of PAD_ROWS."""
    return max(PAD_ROWS, -(-int(batch_size) // PAD_ROWS) * PAD_ROWS)


def padded(t: torch.Tensor, multiple: int = PAD_ROWS) -> torch.Tensor:
    """`t` with copies of its first row appended up to a whole multiple of `multiple` rows."""
    extra = -t.shape[0] % multiple
    return t if extra == 0 else torch.cat([t, t[:1].expand(extra, *t.shape[1:])])


def in_passes(fn: Callable[..., Any], *tensors: torch.Tensor, rows: int) -> Any:
    """``fn(*chunks)`` on consecutive chunks of `rows` rows of `tensors` (all ``[N, ...]``), the last
    chunk padded to a whole multiple of PAD_ROWS (`padded`) and its padding rows dropped from the
    result; `fn` returns a tensor ``[n, ...]`` or a tuple of them, concatenated over the chunks."""
    N = tensors[0].shape[0]
    outs: list[Any] = []
    for lo in range(0, N, rows):
        chunk = [padded(t[lo : lo + rows]) for t in tensors]
        n = min(rows, N - lo)
        got = fn(*chunk)
        outs.append(tuple(g[:n] for g in got) if isinstance(got, tuple) else got[:n])
    if outs and isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs, strict=True))
    return torch.cat(outs)


def trunk(model: Any, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
    """The network's features ``[B, L, d]`` (`model.features`; sigma None for a time-independent
    model). The caller passes whole tiles of sequences (`in_passes`)."""
    if time_independent(model):
        return model.features(x)
    return model.features(x, sigma)


def _head(fn: Callable[..., Any], rows: torch.Tensor, *extra: torch.Tensor) -> Any:
    """`fn` on `rows` ``[N, d]`` (and per-row `extra`) padded to whole tiles, padding dropped."""
    n = rows.shape[0]
    got = fn(padded(rows), *(padded(e) for e in extra))
    return tuple(g[:n] for g in got) if isinstance(got, tuple) else got[:n]


def dwdse_rows(
    model: Any,
    graph: Graph,
    x0: torch.Tensor,
    xt: torch.Tensor,
    sigma: torch.Tensor,
    dsigma: torch.Tensor,
    region: torch.Tensor,
) -> torch.Tensor:
    """sum_{l in region} dsigma * l_l(x_t, x0) per row ``[R]`` (float64): `x0`, `xt`, `region`
    ``[R, L]`` (xt differs from x0 only inside the region), `sigma`, `dsigma` ``[R]``."""
    R = x0.shape[0]
    if isinstance(graph, Absorbing) and hasattr(model, "head_logits") and hasattr(model, "features"):
        masked = xt == graph.mask_id  # [R, L], inside the region only
        rows = masked.nonzero(as_tuple=True)
        b = rows[0]
        if b.numel() == 0:
            return torch.zeros(R, dtype=torch.float64, device=x0.device)
        a = trunk(model, xt, sigma)  # [R, L, d]
        z, offset = _head(
            lambda h, s: model.head_logits(h, s, columns=graph.vocab_size), a[rows], sigma[b]
        )  # [N, V], [N]
        entropy = graph.masked_score_entropy_logits(z, offset, sigma[b], x0[rows])  # [N]
        weighted = dsigma[b].double() * entropy.double()
        return torch.zeros(R, dtype=torch.float64, device=x0.device).index_add(0, b, weighted)
    log_score = model(xt, sigma)  # [R, L, D]
    entropy = graph.score_entropy(log_score, sigma[:, None], xt, x0)  # [R, L]
    entropy = torch.where(region, entropy.double(), 0.0)
    return (dsigma.double()[:, None] * entropy).sum(dim=-1)


def lambda_rows(
    model: Any, graph: Absorbing, x0: torch.Tensor, xt: torch.Tensor, lam: torch.Tensor
) -> torch.Tensor:
    """-sum_{l masked in xt} log c[x0_l] / lambda per row ``[R]`` (float64) for a time-independent
    absorbing model: `x0`, `xt` ``[R, L]``, `lam` ``[R]`` the masking probability of each row."""
    R = x0.shape[0]
    rows = (xt == graph.mask_id).nonzero(as_tuple=True)
    b = rows[0]
    total = torch.zeros(R, dtype=torch.float64, device=x0.device)
    if b.numel() == 0:
        return total
    if hasattr(model, "features"):
        log_c = _head(model.head_log_condition, trunk(model, xt, None)[rows])  # [N, V]
    else:
        log_c = model.log_condition(xt)[rows]
    log_c0 = log_c.gather(-1, x0[rows][:, None]).squeeze(-1).double()  # [N]
    return -total.index_add(0, b, log_c0) / lam.double()


def token_logits(
    model: Any, graph: Absorbing, x: torch.Tensor, sigma: torch.Tensor | None, rows: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """Token log-weights ``[N, V]`` at the masked positions `rows` (a nonzero() tuple) of `x`
    ``[B, L]``, up to a per-row constant: log c for a time-independent model, else the real-token
    log-scores at the per-sequence total noise `sigma` ``[B]``. A row's softmax is the model's
    denoising distribution p(x0_l = j | x) at that position."""
    V = graph.vocab_size
    if time_independent(model):
        if hasattr(model, "features"):
            return _head(model.head_log_condition, trunk(model, x, None)[rows])
        return model.log_condition(x)[rows]
    if hasattr(model, "head_logits") and hasattr(model, "features"):
        a = trunk(model, x, sigma)
        z, _ = _head(lambda h, s: model.head_logits(h, s, columns=V), a[rows], sigma[rows[0]])
        return z
    return model(x, sigma)[rows][:, :V]
