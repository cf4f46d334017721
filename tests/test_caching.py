"""Per-sequence caching for time-independent models (`sampling/caching.py`): the cached Euler and
analytic predictors give bit for bit the samples of the uncached ones, with fewer network rows.

Two facts make that so, each tested: the draws are the same (the cached step reads its values
from the cache and continues as the uncached step), and the network values are the same
(`network.condition_rows` pads its products to whole tiles of 16 rows, so a sequence's values do
not depend on which other sequences share its batch). The second is checked on the values
themselves on shapes where unpadded products did differ on this project's CPUs (a 16-wide tiny
model with L = 3: sub-batches of 1 to 3 sequences), the first on whole runs of a tiny real
time-independent SEDD for several seeds, both predictors, and on the exact oracle.
"""

from __future__ import annotations

import pytest
import torch

from sedd_cli.graph import Absorbing
from sedd_cli.noise import LogLinearNoise
from sedd_cli.sampling import (
    AbsorbingAnalyticPredictor,
    CachedAnalyticPredictor,
    CachedEulerPredictor,
    NetworkCalls,
    generate,
    get_predictor,
)
from sedd_cli.sampling.network import condition_rows

from .oracle import ConditionOracle, L, V, joint_table

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 5


def tiny_ti_sedd(length: int, hidden: int = 16):
    from sedd_cli.model import SEDD

    from .helpers import tiny_model_config

    cfg = tiny_model_config(length=length, hidden_size=hidden, n_blocks=2, n_heads=2, time_conditioning=False)
    model = SEDD(cfg, VOCAB + 1)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for prm in model.parameters():
            prm.copy_(0.3 * torch.randn(prm.shape, generator=gen))
    return model.eval()


def run(model, length, predictor, seed, cache, n=37, steps=48, vocab=VOCAB):
    calls = NetworkCalls()
    gen = torch.Generator().manual_seed(seed)
    x = generate(
        model, Absorbing(vocab), LogLinearNoise(1e-3), batch_size=n, length=length, steps=steps,
        predictor=predictor, generator=gen, cache=cache, calls=calls,
    )  # fmt: skip
    return x, calls


def test_condition_rows_do_not_depend_on_the_batch():
    """log c of a sequence's masked rows: the same bits alone, in a few, or in the whole batch."""
    model = tiny_ti_sedd(3)
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, VOCAB + 1, (40, 3), generator=gen)
    x[:, 1] = VOCAB  # every sequence has a masked row
    with torch.inference_mode():
        idx = (x == VOCAB).nonzero(as_tuple=True)
        full = condition_rows(model, x, idx)  # [N, V]
        for sub in ([0], [3, 5], [1, 2, 7], list(range(0, 40, 3)), list(range(11))):
            sub = torch.tensor(sub)
            rows = (x[sub] == VOCAB).nonzero(as_tuple=True)
            part = condition_rows(model, x[sub], rows)
            pick = torch.isin(idx[0], sub)
            assert torch.equal(part, full[pick]), sub


@pytest.mark.parametrize("predictor", ["analytic", "euler"])
@pytest.mark.parametrize("length", [3, 16])
def test_cached_equals_uncached_on_a_real_model(predictor, length):
    """Bit-identical ids for several seeds; rows: uncached = batch x nfe, cached far fewer."""
    model = tiny_ti_sedd(length)
    for seed in range(4):
        cached, c_calls = run(model, length, predictor, seed, cache=True)
        plain, p_calls = run(model, length, predictor, seed, cache=False)
        assert torch.equal(cached, plain), seed
        assert p_calls.rows == 37 * p_calls.nfe
        assert c_calls.nfe <= p_calls.nfe and c_calls.rows < p_calls.rows / 2


def test_cached_equals_uncached_on_the_oracle_and_skips_unchanged():
    """The exact conditional oracle, 256 steps: same ids; a step that changed no sequence calls
    no network, and no sequence runs more often than its tokens changed (at most L + 1 times)."""
    out = {}
    for cache in (True, False):
        model = ConditionOracle(joint_table())
        out[cache] = run(model, L, "analytic", 2, cache, n=500, steps=256, vocab=V)
    (a, ca), (b, cb) = out[True], out[False]
    assert torch.equal(a, b)
    assert cb.nfe >= 200 and cb.rows == 500 * cb.nfe
    assert ca.rows <= 500 * (3 + 1) and ca.nfe < cb.nfe


def test_the_registry_picks_the_cached_classes():
    """Lookup by (name, graph, fast, cached): the driver sets cached for time-independent models."""
    g, n = Absorbing(VOCAB), LogLinearNoise(1e-3)
    assert type(get_predictor("analytic", g, n, cached=True)) is CachedAnalyticPredictor
    assert type(get_predictor("euler", g, n, cached=True)) is CachedEulerPredictor
    assert type(get_predictor("analytic", g, n, cached=False)) is AbsorbingAnalyticPredictor
    assert type(get_predictor("none", g, n, cached=True)).__name__ == "AbsorbingNonePredictor"
