"""Training: the pipeline stage that turns a config and a corpus into a run directory.

One optimizer step (sedd-spec §4.2), counted from 1 for the first update:

    lr(step)   = train.lr * min(step / train.warmup, 1)        (no decay; warmup 0 = constant)
    loss       = (1 / B) sum_{b < B} loss_b                      (nats per sequence, B = global batch)
    grad       = d loss / d theta, summed over `accum` micro-batches and all processes
    theta     <- AdamW(theta, clip(grad, train.grad_clip))
    ema       <- ema - (1 - d_n) (ema - theta),   d_n = min(train.ema, (1 + n) / (10 + n))

Modules, in the order a run uses them:

* `run_dir`      the run directory: naming, claiming (the lock), cleaning crash leftovers;
* `resume`       a resumed run's config (same model) and its checkpoint, checked and loaded;
* `state`        `RunPlan` and `TrainState`: the data, model, AdamW, EMA and generators built;
* `schedule`     AdamW and the learning-rate schedule;  `data_order`  the row order per epoch;
* `distributed`  torchrun/DDP, the micro-batch rows, the gradient all-reduce, the stop flag;
* `step`         one optimizer step;  `ema`  the EMA of the weights;
* `validation`, `snapshots`, `metrics`, `saving`  what a run reports and writes;
* `loggers/`     TensorBoard and W&B beside metrics.jsonl (rank 0; ``train.loggers``);
* `loop`         `train()`: claim, build, step, report, save;  `events`  TrainEvent, TrainResult.
"""

from .data_order import DataOrder
from .distributed import check_batch_split, processes
from .ema import EMA
from .events import TrainEvent, TrainResult
from .loop import train
from .metrics import curves, read_metrics
from .resume import check_same_model, model_config_diff, resume_config
from .run_dir import (
    CHECKPOINTS_DIR,
    LOCK_FILE,
    METRICS_FILE,
    SAMPLES_DIR,
    RunClaim,
    check_run_dir,
    claim_run_dir,
    default_run_dir,
    resolve_run_dir,
)
from .saving import TRAINER_FORMAT
from .schedule import lr_at, make_optimizer

__all__ = [
    "TrainEvent",
    "TrainResult",
    "DataOrder",
    "EMA",
    "train",
    "lr_at",
    "make_optimizer",
    "default_run_dir",
    "check_run_dir",
    "claim_run_dir",
    "RunClaim",
    "resume_config",
    "model_config_diff",
    "read_metrics",
    "curves",
    "METRICS_FILE",
    "LOCK_FILE",
    "SAMPLES_DIR",
    "CHECKPOINTS_DIR",
    "TRAINER_FORMAT",
    # checks the CLI calls before any work (one check per fact)
    "resolve_run_dir",
    "check_same_model",
    "processes",
    "check_batch_split",
]
