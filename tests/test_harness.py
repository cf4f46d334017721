"""The harness model ``sedd`` (`evaluation.harness`) and ``sedd lm-eval``, offline (needs the eval extra).

A tiny char model is trained for 300 steps on words c^n (c in a..f, n = 2..6; pad layout, L = 16),
so it has a clear preference: after "cc" the continuation "c" beats "d". Local tasks are a YAML
and a JSONL written here (`dataset_path: json`, local `data_files`). Facts checked:

* (b) a multiple-choice task through `lm_eval.simple_evaluate(model="sedd")` and once through
  ``sedd lm-eval``: the accuracy is the one computed here from the adapter's own log-likelihoods
  (argmax over each question's choices against the gold index), and the trained model beats chance;
* (c) every request type: rolling = the sum of its windows' log-likelihood requests (pack model)
  and = the unconditional record (pad model); generation stops at the stop strings and the
  token budget and, at temperature 0, continues the context's letter; all three through
  `simple_evaluate` in one run;
* (d) batching (1 or 40 requests to a pass, any order) changes no number;
* the Monte Carlo error: the bounds log joins the harness's logged samples by (doc_id, idx), and the
  unresolved-margin warning counts questions by the paired standard error;
* bad input: unknown model_args, mc < 1, a model that cannot be loaded, a request too long or
  with characters the model cannot encode: one line, nothing written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

lm_eval = pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from sedd_cli.checkpoints import build_components, save_model_dir  # noqa: E402
from sedd_cli.cli import app  # noqa: E402
from sedd_cli.config import load_config, load_preset  # noqa: E402
from sedd_cli.errors import SeddError  # noqa: E402
from sedd_cli.evaluation.harness import SeddLM  # noqa: E402
from sedd_cli.tokenizers import get_tokenizer  # noqa: E402
from sedd_cli.training import train  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

LETTERS = "abcdef"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny pad-layout char model trained 300 steps on the words c^n (n = 2..6), ~3 s."""
    folder = tmp_path_factory.mktemp("harness")
    words = [c * n for c in LETTERS for n in range(2, 7)]
    (folder / "words.txt").write_text("\n".join(words * 4) + "\n")
    cfg = load_config(
        "tiny",
        sets=[
            f"data.name={folder / 'words.txt'}", "data.valid_fraction=0.1", "train.max_steps=300",
            "train.lr=3e-3", "train.batch_size=16", "train.log_every=100", "train.eval_every=0",
            "train.checkpoint_every=300", "train.sample_every=0",
        ],
    )  # fmt: skip
    train(cfg, run_dir=folder / "run", device="cpu")
    return folder / "run"


@pytest.fixture(scope="module")
def pack_model(tmp_path_factory) -> Path:
    """A tiny random char model with the pack layout (L = 16), saved as a model folder."""
    torch.manual_seed(0)
    cfg = load_preset("tiny")
    cfg.data.layout = "pack"
    tok = get_tokenizer("char", [LETTERS])
    cfg.model.vocab_size = tok.vocab_size
    model, _, _ = build_components(cfg, tok.vocab_size)
    folder = tmp_path_factory.mktemp("pack") / "m"
    save_model_dir(folder, model.state_dict(), cfg, tok, {"step": 0})
    return folder


def _docs() -> list[dict]:
    """36 two-choice questions: after c^n the next letter is c (gold 0, or 1 with the choices swapped)."""
    docs = []
    for c, other in zip(LETTERS, LETTERS[1:] + LETTERS[0], strict=True):
        for n in (1, 2, 3):
            docs.append({"query": c * n, "choices": [c, other], "gold": 0})
            docs.append({"query": c * n, "choices": [other * 2, c * 2], "gold": 1})
    return docs


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> Path:
    """Three local tasks: sedd_mc (multiple choice), sedd_rolling (rolling), sedd_gen (generation)."""
    folder = tmp_path_factory.mktemp("tasks")
    (folder / "mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in _docs()))
    (folder / "text.jsonl").write_text("".join(json.dumps({"text": c * 4}) + "\n" for c in LETTERS))
    head = "dataset_path: json\ntest_split: test\n"
    (folder / "mc.yaml").write_text(
        f"task: sedd_mc\n{head}dataset_kwargs:\n  data_files:\n    test: {folder / 'mc.jsonl'}\n"
        "output_type: multiple_choice\ndoc_to_text: '{{query}}'\ndoc_to_target: '{{gold}}'\n"
        "doc_to_choice: '{{choices}}'\ntarget_delimiter: ''\nmetric_list:\n  - metric: acc\n"
    )
    (folder / "rolling.yaml").write_text(
        f"task: sedd_rolling\n{head}dataset_kwargs:\n  data_files:\n    test: {folder / 'text.jsonl'}\n"
        "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
        "metric_list:\n  - metric: word_perplexity\n"
    )
    (folder / "gen.yaml").write_text(
        f"task: sedd_gen\n{head}dataset_kwargs:\n  data_files:\n    test: {folder / 'text.jsonl'}\n"
        "output_type: generate_until\ndoc_to_text: '{{text}}'\ndoc_to_target: '{{text}}'\n"
        "generation_kwargs:\n  until: ['c']\n  max_gen_toks: 4\nmetric_list:\n  - metric: exact_match\n"
    )
    return folder


def _mc_requests(docs: list[dict]) -> list[Instance]:
    return [
        Instance("loglikelihood", d, (d["query"], choice), j, (None, i, 1))
        for i, d in enumerate(docs)
        for j, choice in enumerate(d["choices"])
    ]


def _accuracy(lm: SeddLM, docs: list[dict]) -> float:
    """The accuracy computed here: per question, the choice with the largest log-likelihood."""
    lls = [ll for ll, _ in lm.loglikelihood(_mc_requests(docs))]
    right, k = 0, 0
    for d in docs:
        scores = lls[k : k + len(d["choices"])]
        k += len(d["choices"])
        right += max(range(len(scores)), key=scores.__getitem__) == d["gold"]
    return right / len(docs)


def _evaluate(model_args: str, task_dir: Path, names: list[str], **kw):
    return lm_eval.simple_evaluate(
        model="sedd", model_args=model_args, tasks=names,
        task_manager=TaskManager(include_path=str(task_dir), include_defaults=False), **kw,
    )  # fmt: skip


def test_simple_evaluate_accuracy_is_the_adapters_own_argmax(trained, tasks):
    """(b) sedd_mc through the harness, mc = 8: its accuracy equals the one computed from the
    adapter's log-likelihoods of the same (context, choice) pairs, and is well above chance."""
    res = _evaluate(f"pretrained={trained},mc=8", tasks, ["sedd_mc"], log_samples=False)
    expected = _accuracy(SeddLM(pretrained=str(trained), mc=8), _docs())
    assert res["results"]["sedd_mc"]["acc,none"] == pytest.approx(expected, abs=1e-12)
    assert expected >= 0.75


def test_every_request_type_runs_through_the_harness(trained, tasks):
    """(c) the three tasks in one run: word_perplexity is the harness's arithmetic on our rolling
    log-likelihoods (exp(-sum ll / words), one word per text), generation metrics exist."""
    res = _evaluate(f"pretrained={trained},mc=4,temperature=0", tasks, ["sedd_rolling", "sedd_gen"])
    lm = SeddLM(pretrained=str(trained), mc=4, temperature=0)
    lls = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (c * 4,), 0) for c in LETTERS])
    assert res["results"]["sedd_rolling"]["word_perplexity,none"] == pytest.approx(
        math.exp(-sum(lls) / len(LETTERS)), rel=1e-9
    )
    outs = [s["resps"][0][0] for s in res["samples"]["sedd_gen"]]
    assert len(outs) == len(LETTERS) and all("c" not in o and len(o) <= 4 for o in outs)
    assert "exact_match,none" in res["results"]["sedd_gen"]


def test_rolling_is_the_sum_of_its_windows(trained, pack_model):
    """(c) pack model, L = 16: a 40-letter text's rolling log-likelihood is the sum of the
    log-likelihood requests (text before the window, the window), windows of 16; on the pad model
    a text's rolling value is the request ("", text)."""
    lm = SeddLM(pretrained=str(pack_model), mc=4)
    text = "".join(LETTERS[(i * 7) % 6] for i in range(40))
    rolling = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])[0]
    windows = [Instance("loglikelihood", {}, (text[:k], text[k : k + 16]), 0) for k in (0, 16, 32)]
    assert rolling == pytest.approx(sum(ll for ll, _ in lm.loglikelihood(windows)), rel=1e-12)
    pad = SeddLM(pretrained=str(trained), mc=4)
    one = pad.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("dddd",), 0)])[0]
    assert one == pad.loglikelihood([Instance("loglikelihood", {}, ("", "dddd"), 0)])[0][0]


def test_generation_respects_budget_stops_and_the_context(trained):
    """(c) temperature 0 (arg-max draws): after c^3 the model writes only c's (its data), within
    max_gen_toks; with a stop string the text is the same generation cut there (same seed: the
    stop strings are not part of a request's seed); the same request gives the same text."""
    lm = SeddLM(pretrained=str(trained), temperature=0)

    def gen(ctx: str, until: list[str], k: int = 3) -> str:
        return lm.generate_until(
            [Instance("generate_until", {}, (ctx, {"until": until, "max_gen_toks": k}), 0)]
        )[0]

    for c in LETTERS:
        out = gen(c * 3, [])
        assert set(out) <= {c} and len(out) <= 3
    free = gen("a", [], 5)
    assert len(free) >= 2 and gen("a", ["aa"], 5) == free[: free.find("aa")]
    assert gen("a", [], 5) == free


def test_batching_and_order_change_nothing(trained):
    """(d) 72 requests, passes of 16 rows (batch_size 1) or 48 (batch_size 40), forward and reversed
    order: the same (log-likelihood, is_greedy) for every request, bit for bit."""
    reqs = _mc_requests(_docs())
    one = SeddLM(pretrained=str(trained), mc=4, batch_size=1).loglikelihood(reqs)
    many = SeddLM(pretrained=str(trained), mc=4, batch_size=40)
    assert many.loglikelihood(reqs) == one
    assert many.loglikelihood(reqs[::-1])[::-1] == one


def test_bounds_log_joins_the_logged_samples(trained, tasks, tmp_path):
    """Every request's line: its log-likelihood (the one in the harness's samples, matched by doc_id
    and choice idx), a positive standard error, mc; K = 1 has no standard error."""
    log = tmp_path / "bounds.jsonl"
    res = _evaluate(
        f"pretrained={trained},mc=6,bounds_log={log}", tasks, ["sedd_mc"], log_samples=True, limit=4
    )
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 8 and all(r["stderr"] > 0 and r["mc"] == 6 for r in lines)
    by_key = {(r["doc_id"], r["idx"]): r["loglikelihood"] for r in lines}
    for s in res["samples"]["sedd_mc"]:
        for idx, resp in enumerate(s["resps"]):
            assert resp[0][0] == by_key[(s["doc_id"], idx)]
    lm = SeddLM(pretrained=str(trained), mc=1, bounds_log=str(log))
    lm.loglikelihood(_mc_requests(_docs()[:1]))
    assert [json.loads(x)["stderr"] for x in log.read_text().splitlines()] == [None, None]


def test_unresolved_margins_are_counted_with_the_paired_error(trained, caplog):
    """Two questions whose answers share their draws (samples spread 0..6, sd 2.4). Question 0:
    margin 1 nat, paired differences constant (paired SE 0): resolved, though the unpaired SE
    sqrt(2) 2.4 / sqrt(8) = 1.2 would call it noise. Question 1: margin 0.1, paired differences
    0.1 +- 0.5 (paired SE 0.19): unresolved. The warning says 1 of 2."""
    lm = SeddLM(pretrained=str(trained), mc=8)
    reqs = [SimpleNamespace(task_name="t", doc_id=d, idx=j) for d in (0, 1) for j in (0, 1)]
    base = torch.linspace(0, 6, 8, dtype=torch.float64)
    jitter = torch.tensor([0.5, -0.5] * 4, dtype=torch.float64)
    values = [base, base + 1.0, base, base + 0.1 + jitter]
    bound = torch.tensor([float(v.mean()) for v in values])
    with caplog.at_level("WARNING", logger="lm_eval.models.sedd"):
        lm._warn_unresolved(reqs, bound, values)
    assert "sedd: 1 of 2 multiple-choice questions" in caplog.text


@pytest.fixture
def local_tasks_only(monkeypatch):
    """The harness's command line indexes its ~10k built-in task files (~12 s here) before it
    reads --include_path; these tests name only local tasks, so skip the built-in index."""
    init = TaskManager.__init__

    def only_local(self, *args, **kw):
        kw["include_defaults"] = False
        init(self, *args, **kw)

    monkeypatch.setattr(TaskManager, "__init__", only_local)


@pytest.mark.usefixtures("local_tasks_only")
def test_cli_runs_a_local_task_end_to_end(trained, tasks, tmp_path):
    """(b) ``sedd lm-eval`` with the harness's own --include_path, --output_path, --limit: exit 0,
    the table on stdout, and the results file's accuracy equals the adapter's own argmax over
    the first 6 questions."""
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app,
        [
            "lm-eval", "--model", "sedd", "--model_args", f"pretrained={trained},mc=8", "--tasks", "sedd_mc",
            "--include_path", str(tasks), "--output_path", str(out), "--limit", "6",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "sedd_mc" in r.stdout and "acc" in r.stdout
    (results,) = out.rglob("results_*.json")
    acc = json.loads(results.read_text())["results"]["sedd_mc"]["acc,none"]
    assert acc == pytest.approx(_accuracy(SeddLM(pretrained=str(trained), mc=8), _docs()[:6]), abs=1e-12)


# --- bad input: one line, nothing written ------------------------------------------------------------


@pytest.mark.parametrize(
    "model_args, fragment",
    [
        ("pretrained=MODEL,mcc=8", "unknown model_args key 'mcc' for --model sedd: did you mean 'mc'?"),
        ("pretrained=MODEL,mc=0", "model_args mc must be an integer from 1 to"),
        ("mc=8", "model_args pretrained is required"),
        ("pretrained=MODEL,batch_size=auto", "batch_size auto is not supported"),
        ("pretrained=/no/such/model", "/no/such/model"),
    ],
)
def test_bad_model_args_are_one_line_errors(trained, tasks, model_args, fragment):
    with pytest.raises(SeddError) as err:
        _evaluate(model_args.replace("MODEL", str(trained)), tasks, ["sedd_mc"])
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_requests_that_cannot_be_scored_stop_before_any_work(trained, tmp_path):
    """A request too long for the pad model, or with a character outside its vocabulary, is refused
    naming the request, before any network call: the bounds log is not written."""
    log = tmp_path / "bounds.jsonl"
    lm = SeddLM(pretrained=str(trained), bounds_log=str(log))
    good = Instance("loglikelihood", {}, ("aa", "a"), 0, ("t", 0, 1))
    long = Instance("loglikelihood", {}, ("a" * 10, "a" * 7), 0, ("t", 1, 1))
    with pytest.raises(SeddError, match=r"request 1 \(t doc 1\): context \+ continuation are 17 tokens"):
        lm.loglikelihood([good, long])
    bad = Instance("loglikelihood", {}, ("aa", "z"), 0, ("t", 2, 1))
    with pytest.raises(SeddError, match=r"request 1 \(t doc 2\): the model's vocabulary lacks"):
        lm.loglikelihood([good, bad])
    assert not log.exists()


@pytest.mark.usefixtures("local_tasks_only")
@pytest.mark.parametrize(
    "model_args, tasks_arg, message",
    [
        ("mc=0", "sedd_mc", "error: model_args mc must be an integer"),
        ("mc=2", "no_such_task", "error: lm-eval: Tasks not found: no_such_task"),
    ],
)
def test_cli_error_is_one_line_without_traceback(trained, tasks, model_args, tasks_arg, message):
    """``sedd lm-eval`` with a bad model_arg, or a task the harness does not find: exit 1, the last
    stderr line is the one error (the lines before it are the harness's own logs), no traceback."""
    argv = ["--model", "sedd", "--model_args", f"pretrained={trained},{model_args}", "--tasks", tasks_arg]
    r = CliRunner().invoke(app, ["lm-eval", *argv, "--include_path", str(tasks)])
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in r.stderr
