"""The harness model ``sedd``: EleutherAI's lm-evaluation-harness scoring any sedd model.

Importing this module registers `SeddLM` under the name ``sedd`` (`lm_eval.api.registry`), so
``simple_evaluate(model="sedd", model_args="pretrained=MODEL,mc=32")`` and ``sedd lm-eval --model
sedd ...`` work. It is the only module of sedd that imports `lm_eval` (the ``eval`` extra);
`sedd_cli.evaluation` does not import it. lm-eval 0.4.13 reads no entry points for outside models,
so plain ``lm_eval --model sedd`` does not find it: use ``sedd lm-eval`` (docs/evaluation.md).

The three request types (`requests` has the layout rules, `harness_args` the model_args):

* ``loglikelihood(context, continuation)``: (-b, is_greedy) with b the conditional bound on
  -log p(continuation | context) (`conditional.conditional_bound`, K = mc samples, seeded per
  request by hashing the seed with the context's tokens) and is_greedy the greedy fill's verdict
  (`greedy.greedy_matches`). The log-likelihood reported is a lower bound, up to Monte Carlo error.
* ``loglikelihood_rolling(text)``: minus the sum of the bounds of the text's windows.
* ``generate_until(context, gen_kwargs)``: `sampling.infill_ids` with the context given and
  max_gen_toks free positions, cut at end-of-text / pad and at the ``until`` strings; the sampler
  is the model's ``sample:`` settings or the model_args predictor / steps / temperature / top_p
  (gen_kwargs other than until and max_gen_toks are not used).

**The Monte Carlo error is visible**: with ``bounds_log=PATH`` every request's bound, standard
error, K and layout facts go to a JSONL file (keys task, doc_id, idx join it to the harness's
``--log_samples`` output, whose per-request fields only hold (log-likelihood, is_greedy)); and
after each batch of log-likelihood requests the count of multiple-choice questions whose two best
answers are closer than two standard errors of their difference is logged as a warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

from ..errors import SeddError

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError:  # pragma: no cover - the eval extra is missing
    raise SeddError("the harness adapter needs lm-eval: pip install 'sedd-cli[eval]'") from None

from ..runtime import atomic_write_text
from ..sampling.api import infill_ids
from ..tokenizers import UnencodableText
from .bound import estimator_for
from .conditional import conditional_bound, request_seed
from .greedy import greedy_matches
from .harness_args import harness_options, merge_harness_args
from .requests import Layout, ScoreRow, encode_pair, generated_text, generation_row, rolling_rows, score_row

__all__ = ["SeddLM", "RESOLVE_Z", "run_harness"]

logger = logging.getLogger("lm_eval.models.sedd")
RESOLVE_Z = 2.0  # a multiple-choice margin under this many standard errors is reported as unresolved


def _where(req: Any, i: int) -> str:
    task = getattr(req, "task_name", None)
    doc = getattr(req, "doc_id", None)
    return f"request {i}" + (f" ({task} doc {doc})" if task is not None else "")


def _each(requests: list[Any], build: Callable[[Any, str], Any]) -> list[Any]:
    """`build(request, where)` for every request, before any network call: a request that cannot
    be laid out (too long, text the tokenizer cannot encode) stops the call with one line naming it."""
    out = []
    for i, req in enumerate(requests):
        where = _where(req, i)
        try:
            out.append(build(req, where))
        except UnencodableText as exc:
            raise SeddError(f"{where}: {exc}") from None
    return out


def _by_length(rows: list[ScoreRow]) -> list[list[int]]:
    """The indices of `rows` grouped by row length (a forward pass needs one length), shortest first."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[len(r.ids)].append(i)
    return [groups[n] for n in sorted(groups)]


def run_harness(argv: list[str]) -> None:
    """The harness's own command line (``lm_eval.__main__.cli_evaluate``, which reads sys.argv) on
    `argv`, unchanged, with ``sedd`` registered; sys.argv is restored afterwards. A ValueError of
    the harness (how it refuses its arguments: an unknown task, --limit with --samples) becomes one
    line, ``lm-eval: ...`` (``SEDD_DEBUG=1``: the traceback). The harness's log
    handler (made once per process) is pointed at the current stderr, so a second call in one
    process (tests, notebooks) does not write to a stream the first one's caller has closed."""
    import sys

    from lm_eval.__main__ import cli_evaluate

    for handler in logging.getLogger("lm_eval").handlers:
        if type(handler) is logging.StreamHandler:  # the harness's own (not a test's capture handler)
            with handler.lock:  # not setStream: it flushes the old stream, which may be closed
                handler.stream = sys.stderr
    saved = sys.argv
    sys.argv = ["lm-eval", *argv]
    try:
        cli_evaluate()
    except ValueError as exc:  # the harness's own checks of its arguments (e.g. "Tasks not found")
        if os.environ.get("SEDD_DEBUG"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SeddError(f"lm-eval: {first}") from None
    finally:
        sys.argv = saved


@register_model("sedd")
class SeddLM(LM):
    """lm-evaluation-harness's `LM` for a sedd model (module docstring). Keyword arguments: the
    ``model_args`` of `harness_args.harness_options` (``pretrained`` required)."""

    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        self.options = harness_options(model_args)  # every key checked before the model loads
        from ..checkpoints import load_pretrained

        o = self.options
        self.pre = load_pretrained(o.pretrained, device=o.device, weights=o.weights)
        self.layout = Layout.of(self.pre)
        self._device = self.pre.device
        self.estimator = estimator_for(self.pre.model, self.pre.graph)
        self.records: list[dict[str, Any]] = []

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> SeddLM:
        from lm_eval.utils import simple_parse_args_string

        return cls(**merge_harness_args(simple_parse_args_string(arg_string), additional_config))

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> SeddLM:
        return cls(**merge_harness_args(dict(arg_dict), additional_config))

    @property
    def tokenizer_name(self) -> str:
        return f"sedd:{self.pre.source}"

    # --- the bound on rows ----------------------------------------------------------------------

    def _bounds(self, rows: list[ScoreRow]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(bound [N], stderr [N], per-row samples [K] each) of `rows`, grouped by row length."""
        o, pre = self.options, self.pre
        N = len(rows)
        bound = torch.zeros(N, dtype=torch.float64)
        se = torch.zeros(N, dtype=torch.float64)
        values: list[torch.Tensor] = [torch.zeros(0)] * N
        for idx in _by_length(rows):
            res = conditional_bound(
                pre.model, pre.graph, pre.noise,
                torch.tensor([rows[i].ids for i in idx], dtype=torch.long),
                [rows[i].start for i in idx], [rows[i].end for i in idx], o.mc,
                [request_seed(o.seed, *rows[i].seed_parts) for i in idx],
                width=self.layout.length, batch_size=o.batch_size,
            )  # fmt: skip
            bound[idx], se[idx] = res.bound, res.stderr
            for j, i in enumerate(idx):
                values[i] = res.values[j]
        return bound, se, values

    def _greedy(self, rows: list[ScoreRow]) -> list[bool]:
        if not self.options.greedy:
            return [False] * len(rows)
        out = [False] * len(rows)
        for idx in _by_length(rows):
            got = greedy_matches(
                self.pre.model, self.pre.graph, self.pre.noise,
                torch.tensor([rows[i].ids for i in idx], dtype=torch.long),
                [rows[i].start for i in idx], [rows[i].end for i in idx], batch_size=self.options.batch_size,
            )  # fmt: skip
            for j, i in enumerate(idx):
                out[i] = bool(got[j])
        return out

    # --- the three request types ----------------------------------------------------------------

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        tok = self.pre.tokenizer
        rows = _each(requests, lambda req, where: score_row(self.layout, *encode_pair(tok, *req.args), where))
        bound, se, values = self._bounds(rows)
        greedy = self._greedy(rows)
        out = []
        for i, req in enumerate(requests):
            res = (-float(bound[i]), greedy[i])
            out.append(res)
            self.cache_hook.add_partial("loglikelihood", req.args, res)
            self._record(req, "loglikelihood", res[0], float(se[i]), rows[i], is_greedy=greedy[i])
        self._warn_unresolved(requests, bound, values)
        self._write_log()
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        tok = self.pre.tokenizer
        windows = _each(
            requests, lambda req, where: rolling_rows(self.layout, tok.encode(req.args[0]), where)
        )
        rows = [r for w in windows for r in w]
        owner = torch.tensor([i for i, w in enumerate(windows) for _ in w], dtype=torch.long)
        bound, se, _ = self._bounds(rows)
        total = torch.zeros(len(requests), dtype=torch.float64).index_add(0, owner, bound)
        var = torch.zeros(len(requests), dtype=torch.float64).index_add(0, owner, se.nan_to_num() ** 2)
        out = []
        for i, req in enumerate(requests):
            ll = -float(total[i])
            out.append(ll)
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, ll)
            se_i = math.sqrt(float(var[i])) if self.options.mc >= 2 else None
            self._record(req, "loglikelihood_rolling", ll, se_i, None, windows=len(windows[i]))
        self._write_log()
        return out

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        o, tok = self.options, self.pre.tokenizer

        def plan(req: Any, where: str) -> tuple[Any, list[str]]:
            context, gen_kwargs = req.args[0], dict(req.args[1] or {})
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            return generation_row(
                self.layout, tok.encode(context), gen_kwargs.get("max_gen_toks", 256), where
            ), until

        out = []
        for req, (row, until) in zip(requests, _each(requests, plan), strict=True):
            seed = request_seed(o.seed, *row.seed_parts)
            ids = infill_ids(
                self.pre, row.slots, steps=o.steps, predictor=o.predictor, seed=seed,
                temperature=o.temperature, top_p=o.top_p,
            )  # fmt: skip
            text = generated_text(self.layout, tok, ids[0, row.start : row.start + row.free].tolist(), until)
            out.append(text)
            self.cache_hook.add_partial("generate_until", req.args, text)
            self._record(
                req, "generate_until", None, None, None, free=row.free, truncated=row.truncated, text=text
            )
        self._write_log()
        return out

    # --- the Monte Carlo error, visible -----------------------------------------------------------

    def _record(
        self, req: Any, kind: str, ll: float | None, se: float | None, row: ScoreRow | None, **extra: Any
    ) -> None:
        rec: dict[str, Any] = {
            "request": kind,
            "task": getattr(req, "task_name", None),
            "doc_id": getattr(req, "doc_id", None),
            "idx": getattr(req, "idx", None),
        }
        if ll is not None:
            rec |= {
                "loglikelihood": ll,
                "stderr": None if se is None or math.isnan(se) else se,
                "mc": self.options.mc,
            }
            rec["estimator"] = self.estimator
        if row is not None:
            rec |= {"scored_positions": row.scored, "row_length": len(row.ids), "truncated": row.truncated}
        self.records.append(rec | extra)

    def _write_log(self) -> None:
        """All records so far, rewritten atomically (a failed run leaves the previous complete file)."""
        if self.options.bounds_log is not None:
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records)
            atomic_write_text(self.options.bounds_log, text)

    def _warn_unresolved(self, requests: list[Any], bound: torch.Tensor, values: list[torch.Tensor]) -> None:
        """Log how many multiple-choice questions (requests sharing task and doc_id) have their two
        best answers within RESOLVE_Z standard errors of their difference. The difference's error is
        that of the paired samples, sd_k(v_a,k - v_b,k) / sqrt(K): the answers of one context share
        their draws (common random numbers)."""
        docs: dict[tuple[Any, Any], list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            if getattr(req, "doc_id", None) is not None:
                docs[(getattr(req, "task_name", None), req.doc_id)].append(i)
        K = self.options.mc
        questions = [idx for idx in docs.values() if len(idx) >= 2]
        if K < 2 or not questions:
            return
        unresolved = 0
        for idx in questions:
            a, b = sorted(idx, key=lambda i: float(bound[i]))[:2]
            margin = float(bound[b] - bound[a])
            se = float((values[a] - values[b]).std()) / math.sqrt(K)
            unresolved += margin < RESOLVE_Z * se
        if unresolved:
            logger.warning(
                "sedd: %d of %d multiple-choice questions have their two best answers within %.0f standard "
                "errors (mc=%d): their choice is Monte Carlo noise; raise mc (docs/evaluation.md)",
                unresolved, len(questions), RESOLVE_Z, K,
            )  # fmt: skip
