"""Sampling: the reverse process of sedd-spec §5 (predictors, final denoiser, projector for infill).

The stage, module by module, in the order data flows:

* `checks`: every sampling option's check (steps, samples, batch size, length, eps, precision,
  output files), one function per fact; shaping (`check_shaping`) lives in `config`.
* `draws`: exact categorical draws (`sample_categorical`), the top-p `nucleus`, shaped token draws.
* `network`: how the sampler calls the score network and the noise schedule; `NetworkCalls`.
* `predictors`: `Predictor` (a step that calls the network itself), the registry
  (`register_predictor`, `get_predictor`), the general euler / analytic / none classes.
* `absorbing`: the masked-rows classes and denoiser of the absorbing graph's fast path.
* `caching`: the per-sequence cached Euler / analytic classes for time-independent models.
* `first_hitting`: the exact first-hitting sampler (one unmasking event per network call).
* `driver`: `generate` (time grid, projector, final denoiser, `StepEvent`s).
* `templates`: infill templates, prefix/suffix slots, the pad tail; `decoding`: ids to text.
* `results`: `SampleResult`, `InfillResult`; `api`: the `sample` and `infill` entries, and
  `infill_ids` (infill on token ids).
"""

from ..config import check_shaping
from .absorbing import (
    AbsorbingAnalyticPredictor,
    AbsorbingEulerPredictor,
    AbsorbingNonePredictor,
    MaskedRowsStep,
)
from .api import check_sample_settings, infill, infill_ids, sample
from .caching import CachedAnalyticPredictor, CachedEulerPredictor, CachedRows
from .checks import MAX_SAMPLES, MAX_STEPS, PRECISIONS
from .decoding import decode_samples
from .draws import nucleus, sample_categorical
from .driver import StepEvent, generate
from .first_hitting import FirstHittingPredictor
from .network import NetworkCalls
from .predictors import (
    ABSORBING_PREDICTORS,
    CACHED_PREDICTORS,
    PREDICTORS,
    AnalyticPredictor,
    EulerPredictor,
    NonePredictor,
    Predictor,
    check_predictor,
    get_predictor,
    register_predictor,
)
from .results import InfillResult, SampleResult
from .templates import parse_template

__all__ = [
    "Predictor",
    "EulerPredictor",
    "AnalyticPredictor",
    "NonePredictor",
    "MaskedRowsStep",
    "AbsorbingEulerPredictor",
    "AbsorbingAnalyticPredictor",
    "AbsorbingNonePredictor",
    "CachedRows",
    "CachedEulerPredictor",
    "CachedAnalyticPredictor",
    "FirstHittingPredictor",
    "CACHED_PREDICTORS",
    "NetworkCalls",
    "PREDICTORS",
    "ABSORBING_PREDICTORS",
    "PRECISIONS",
    "register_predictor",
    "get_predictor",
    "check_predictor",
    "check_sample_settings",
    "sample_categorical",
    "nucleus",
    "check_shaping",
    "StepEvent",
    "generate",
    "SampleResult",
    "InfillResult",
    "sample",
    "infill",
    "infill_ids",
    "parse_template",
    "decode_samples",
    "MAX_STEPS",
    "MAX_SAMPLES",
]
