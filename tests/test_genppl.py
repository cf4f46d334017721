"""Generative perplexity through a `transformers` causal LM: strided windows past the context,
batching, local loading, and what reaches the evaluator (sampled ids as the reference, EOS kept).

The evaluator is a tiny GPT-2 built from a `GPT2Config` with random weights (no download) and a
character tokenizer built with `tokenizers`, with the ids of the sedd char tokenizer.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import sedd_cli.evaluation.evaluators as evaluators
import sedd_cli.evaluation.generative as generative
from sedd_cli.checkpoints import build_components, load_pretrained, save_model_dir
from sedd_cli.config import load_preset
from sedd_cli.evaluation import CausalLMEvaluator, generative_perplexity, hf_evaluator
from sedd_cli.evaluation.evaluators import _windows
from sedd_cli.tokenizers import get_tokenizer

from .conftest import requires_gpt2

transformers = pytest.importorskip("transformers")

CONTEXT = 16


@pytest.fixture(scope="module")
def sedd_tok():
    return get_tokenizer("char", ["abc def"])  # <pad> 0, <eos> 1, ' ' 2, a..f 3..8


def _hf_tokenizer(sedd_tok):
    """A transformers tokenizer with the sedd char tokenizer's ids (one id per character, <eos>
    a special token that is recognised in text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    pieces = sedd_tok.pieces(list(range(sedd_tok.vocab_size)))
    t = Tokenizer(models.WordLevel({p: i for i, p in enumerate(pieces)}, unk_token="<pad>"))
    t.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    t.decoder = decoders.Fuse()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<eos>", pad_token="<pad>")
    tok.model_max_length = CONTEXT
    return tok


@pytest.fixture(scope="module")
def tiny_lm(sedd_tok):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=sedd_tok.vocab_size, n_positions=CONTEXT, n_embd=16, n_layer=2, n_head=2,
        bos_token_id=1, eos_token_id=1,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(cfg).eval(), _hf_tokenizer(sedd_tok)


def _direct_nll(lm, ids: list[int], first: int = 1) -> float:
    """Sum of -log p(id_p | ids_<p) for p = first..n-1 from one unbatched forward pass."""
    x = torch.tensor([ids])
    with torch.no_grad():
        logp = lm(x).logits[0, :-1].float().log_softmax(-1)
    return -float(logp[torch.arange(len(ids) - 1), x[0, 1:]][first - 1 :].sum())


@pytest.mark.parametrize(
    "n, context, stride", [(5, 16, 8), (16, 16, 8), (17, 16, 8), (40, 16, 8), (41, 16, 5)]
)
def test_windows_predict_every_id_once_with_enough_context(n, context, stride):
    """Every id but id 0 is predicted by exactly one window; windows fit the context; a prediction
    in a later window sees at least context - stride earlier ids."""
    covered = []
    for begin, end, first in _windows(n, context, stride):
        assert 0 <= begin < first <= end <= n and end - begin <= context
        if begin > 0:
            assert first - begin >= context - stride
        covered += range(first, end)
    assert covered == list(range(1, n))


@pytest.mark.slow  # ~5 s on 2 cores: building the GPT-2 and its first forward passes
def test_scores_are_the_model_nll_batched_and_windowed(tiny_lm):
    """Texts up to the context: the sum of -log p over ids 1..n-1 of one unbatched forward pass
    (the reference's convention). A 40-character text (past the 16-position context, which crashed
    before) is scored window by window: the same sums from unbatched passes over each window, n - 1
    predictions. Batches never exceed batch_size, and batch_size does not change the numbers."""
    lm, tok = tiny_lm
    texts = ["abc", "fed cab", "a", "bad cafe dead be", "ace " * 10]
    ev3 = CausalLMEvaluator(lm, tok, batch_size=3)
    got = ev3(texts)
    ids = [tok(t, verbose=False)["input_ids"] for t in texts]
    assert len(ids[3]) == CONTEXT
    assert len(ids[4]) == 40 > CONTEXT
    for i in (0, 1, 3):
        assert got[i].tokens == ids[i] and got[i].n == len(ids[i]) - 1
        assert got[i].nll == pytest.approx(_direct_nll(lm, ids[i]), rel=1e-5)
    assert got[2].n == 0 and got[2].nll == 0.0
    want = sum(_direct_nll(lm, ids[4][b:e], f - b) for b, e, f in _windows(40, CONTEXT, CONTEXT // 2))
    assert got[4].n == 39 and got[4].nll == pytest.approx(want, rel=1e-5)
    n_windows = 3 + len(_windows(40, CONTEXT, CONTEXT // 2))
    assert max(ev3.forward_batches) <= 3 and sum(ev3.forward_batches) == n_windows
    assert len(ev3.forward_batches) == math.ceil(n_windows / 3)
    one = CausalLMEvaluator(lm, tok, batch_size=1)(texts)
    for a, b in zip(got, one, strict=True):
        assert a.nll == pytest.approx(b.nll, rel=1e-5, abs=1e-6) and a.n == b.n


def test_hf_evaluator_loads_a_local_folder_and_honours_batch_size(tiny_lm, tmp_path):
    lm, tok = tiny_lm
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    evaluator = hf_evaluator(str(tmp_path / "lm"), device="cpu", batch_size=2)
    assert evaluator.batch_size == 2 and evaluator.context == CONTEXT
    scores = evaluator(["ace " * 10, "abc", "bad", "fed"])
    assert scores[0].n == 39 and max(evaluator.forward_batches) == 2
    # the literal end-of-text string in a samples file is read back as the EOS id
    assert evaluator.encode("ab<eos>c") == [3, 4, 1, 5]


@pytest.fixture(scope="module")
def pack_model(tmp_path_factory, sedd_tok):
    """A tiny random char model with pack layout (EOS between documents)."""
    torch.manual_seed(0)
    cfg = load_preset("tiny")
    cfg.model.vocab_size = sedd_tok.vocab_size
    cfg.data.layout = "pack"
    model, _, _ = build_components(cfg, sedd_tok.vocab_size)
    folder = tmp_path_factory.mktemp("genppl") / "m"
    save_model_dir(folder, model.state_dict(), cfg, sedd_tok, {"step": 0})
    return folder


def test_fresh_samples_reach_a_same_vocabulary_evaluator_as_ids(pack_model, tiny_lm, sedd_tok, monkeypatch):
    """As the reference: with an evaluator of the model's vocabulary the sampled ids are scored as
    they are, all L of them, end-of-text included (before, they were decoded with special tokens
    skipped, so EOS vanished)."""
    import sedd_cli.sampling as sampling

    lm, tok = tiny_lm
    L = load_pretrained(str(pack_model), device="cpu").config.model.length
    fixed = torch.tensor([[3, 4, 1, 5, 2, 6] + [7] * (L - 6), [1] * 3 + [8] * (L - 3)])
    monkeypatch.setattr(sampling, "generate", lambda *a, **k: fixed[: k["batch_size"]])
    monkeypatch.setattr(evaluators, "_PROBE", "bad cafe")  # a probe the char vocabulary can encode
    evaluator = CausalLMEvaluator(lm, tok, batch_size=4)
    seen = []
    real = evaluator.score_ids
    evaluator.score_ids = lambda rows: seen.extend(rows) or real(rows)
    r = generative_perplexity(str(pack_model), evaluator=evaluator, num_samples=2, batch_size=2, device="cpu")
    assert seen == fixed.tolist() and "sampled ids" in r.scored
    assert r.n_tokens == 2 * (L - 1)


def test_fresh_samples_for_another_vocabulary_keep_end_of_text(pack_model, tiny_lm, monkeypatch):
    """An evaluator that does not share the vocabulary gets text; end-of-text is not dropped (for
    GPT-2 models it is written as <|endoftext|>, see the next test); here the char tokenizer
    renders it as "" and the texts are exactly the decoded rows."""
    import sedd_cli.sampling as sampling

    lm, tok = tiny_lm
    L = load_pretrained(str(pack_model), device="cpu").config.model.length
    fixed = torch.tensor([[3, 4, 1, 5] + [6] * (L - 4)])
    monkeypatch.setattr(sampling, "generate", lambda *a, **k: fixed)
    evaluator = CausalLMEvaluator(lm, tok, batch_size=4)  # the default probe has characters "abc def" lacks
    seen = []
    real = evaluator.__call__
    r = generative_perplexity(
        str(pack_model),
        evaluator=lambda texts: seen.extend(texts) or real(texts),
        num_samples=1,
        device="cpu",
    )
    assert seen == ["abc" + "d" * (L - 4)] and "decoded" in r.scored


@requires_gpt2
def test_gpt2_samples_decode_with_end_of_text_kept():
    """GPT-2 ids with an EOS between two documents decode to text that keeps <|endoftext|> (which a
    GPT-2 evaluator's tokenizer reads back as id 50256); pads are dropped only for pad layouts."""
    tok = get_tokenizer("gpt2")
    ids = tok.encode("Hello") + [50256] + tok.encode(" world")
    pre = SimpleNamespace(tokenizer=tok, config=SimpleNamespace(data=SimpleNamespace(layout="pack")))
    assert generative._sample_texts(pre, torch.tensor([ids])) == ["Hello<|endoftext|> world"]
