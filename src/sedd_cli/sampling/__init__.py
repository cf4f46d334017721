"""Sampling: the reverse process of sedd-spec §5 (predictors, final denoiser, projector for infill).

The stage, module by module, in the order data flows:

* `checks`: every sampling option's check (steps, samples, batch size, length, eps, precision,
  output files), one function per fact; shaping (`check_shaping`) lives in `config`.
* `draws`: exact categorical draws (`sample_categorical`), the top-p `nucleus`, shaped token draws.
* `network`: how the sampler calls the score network and the noise schedule.
* `predictors`: `Predictor` (a step that calls the network itself), the registry
  (`register_predictor`, `get_predictor`), the general euler / analytic / none classes.
* `absorbing`: the masked-rows classes and denoiser of the absorbing graph's fast path.
* `driver`: `generate` (time grid, projector, final denoiser, `StepEvent`s).
* `templates`: infill templates, prefix/suffix slots, the pad tail; `decoding`: ids to text.
* `results`: `SampleResult`, `InfillResult`; `api`: the `sample` and `infill` entries.
"""

from ..config import check_shaping
from .absorbing import (
    AbsorbingAnalyticPredictor,
    AbsorbingEulerPredictor,
    AbsorbingNonePredictor,
    MaskedRowsStep,
)
from .api import check_sample_settings, infill, sample
from .checks import MAX_SAMPLES, MAX_STEPS, PRECISIONS
from .decoding import decode_samples
from .draws import nucleus, sample_categorical
from .driver import StepEvent, generate
from .predictors import (
    ABSORBING_PREDICTORS,
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
    "parse_template",
    "decode_samples",
    "MAX_STEPS",
    "MAX_SAMPLES",
]
