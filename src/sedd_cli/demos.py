"""Small demonstrations of the method on real text, as plain functions returning dataclasses.

They back the teaching commands ``sedd tokenize``, ``sedd noise``, ``sedd cipher-demo`` and
``sedd loss`` (docs/concepts.md walks through them). Nothing here prints or exits; bad input
raises `SeddError` with a one-line message.

The forward process (sedd-spec §1-2). Every token is corrupted independently; after total noise
sigma = sigma(t) a token has moved with probability

    move_chance(t) = 1 - e^(-sigma(t))        (LogLinear: exactly (1 - eps) t)

- absorbing graph: a moved token becomes the mask id M = V;
- uniform graph: a moved token is replaced by a uniform draw from all V ids (possibly itself).

A *coupled* draw fixes one uniform number u_l per position (and, for the uniform graph, one
replacement id r_l) and corrupts position l at time t iff u_l < move_chance(t). For a single t
this is exactly the graph's `sample_transition` with the same generator; over several t the
corrupted set can only grow with t, which is what ``sedd noise --frames`` shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import SeddError
from .graph import Absorbing, Graph, Uniform, esigm1
from .noise import GeometricNoise, LogLinearNoise, Noise
from .tokenizers import TOKENIZER_FILE, TOKENIZERS, Tokenizer, get_tokenizer, load_tokenizer

if TYPE_CHECKING:
    from .checkpoints import Pretrained

__all__ = [
    "GRAPHS",
    "MASK_GLYPH",
    "TokenizeResult",
    "NoiseFrame",
    "NoiseResult",
    "CipherResult",
    "Prediction",
    "LossPosition",
    "LossResult",
    "check_text",
    "check_t",
    "resolve_tokenizer",
    "demo_graph",
    "coupled_draw",
    "tokenize_text",
    "noise_text",
    "cipher_text",
    "loss_text",
]

GRAPHS = ("absorb", "uniform")
MASK_GLYPH = "█"  # how a masked token is drawn (one glyph per token; --drop-mask draws nothing)
MAX_FRAMES = 1000  # `noise --frames`: each frame is one decoded text of the whole input


# --- checks and building blocks -----------------------------------------------------------------


def check_text(text: str) -> str:
    """`text` itself, or SeddError when it is empty."""
    if not isinstance(text, str) or text == "":
        raise SeddError("the text is empty: pass some text (or '-' to read it from standard input)")
    return text


def check_t(t: float, name: str = "t") -> float:
    """`t` as a float, or SeddError unless 0 <= t <= 1."""
    t = float(t)
    if not math.isfinite(t) or not 0.0 <= t <= 1.0:
        raise SeddError(f"{name} must be between 0 and 1 (0 = clean text, 1 = all noise), got {t:g}")
    return t


def _encode(text: str, tokenizer: Tokenizer) -> list[int]:
    ids = tokenizer.encode(check_text(text))
    if not ids:
        raise SeddError("the text has no tokens after tokenization: pass text the tokenizer can encode")
    return ids


def resolve_tokenizer(spec: str | Tokenizer, text: str | None = None) -> Tokenizer:
    """The tokenizer named by `spec`: ``gpt2`` | ``byte`` | ``char`` | a model directory.

    ``char`` without a model builds its vocabulary from `text` itself (its distinct characters,
    sorted), so every character of the text is in it. A directory means a model folder, a run
    directory or a checkpoint folder: its saved ``tokenizer.json`` is used (for a checkpoint
    ``runs/NAME/checkpoints/step_N`` the run's, two levels up). A Tokenizer passes through.
    """
    if not isinstance(spec, str):
        return spec
    if spec == "char":
        return get_tokenizer("char", [check_text(text or "")])
    if spec in TOKENIZERS:
        return get_tokenizer(spec)
    path = Path(spec)
    if path.is_dir():
        for candidate in (path, path.parent.parent):
            if (candidate / TOKENIZER_FILE).is_file():
                return load_tokenizer(candidate)
        return load_tokenizer(path)  # raises the "no tokenizer.json" error
    if path.exists():
        raise SeddError(f"--tokenizer {spec!r} is a file: pass a model directory holding {TOKENIZER_FILE}")
    import difflib

    close = difflib.get_close_matches(spec.lower(), TOKENIZERS, n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise SeddError(
        f"unknown tokenizer {spec!r}: use gpt2, char, byte or a model directory holding "
        f"{TOKENIZER_FILE}{hint}"
    )


def demo_graph(name: str, vocab_size: int) -> tuple[Graph, Noise]:
    """The graph and the schedule the paper pairs with it.

    absorb -> Absorbing(V) with LogLinearNoise(eps=1e-3) (both published checkpoints);
    uniform -> Uniform(V) with GeometricNoise(1e-4, 20) (the reference config for that graph).
    """
    if name == "absorb":
        return Absorbing(vocab_size), LogLinearNoise(1e-3)
    if name == "uniform":
        return Uniform(vocab_size), GeometricNoise(1e-4, 20.0)
    raise SeddError(f"unknown graph {name!r}: use absorb or uniform")


def _schedule(noise: Noise, t: float) -> tuple[float, float, float]:
    """(sigma, dsigma, move_chance = 1 - e^-sigma) at time t, computed in float64."""
    sigma, dsigma = noise(torch.tensor(t, dtype=torch.float64))
    move = -torch.expm1(-sigma)
    return float(sigma), float(dsigma), float(move)


@dataclass
class CoupledDraw:
    """One draw shared by every t: position l moves at time t iff ``u[l] < move_chance(t)``;
    a moved position becomes ``replacement[l]`` (the mask id for the absorbing graph)."""

    u: torch.Tensor  # [L] uniform in [0, 1)
    replacement: torch.Tensor  # [L] int64

    def corrupt(self, x0: torch.Tensor, move_chance: float) -> torch.Tensor:
        """x_t for clean ids `x0` [L] at the given move chance."""
        return torch.where(self.u < move_chance, self.replacement, x0)


def coupled_draw(graph: Graph, length: int, seed: int) -> CoupledDraw:
    """Draw u ~ U[0, 1)^L (then, for the uniform graph, replacement ids ~ U{0..V-1}^L) from a CPU
    generator seeded with `seed`, in the same order as ``graph.sample_transition`` draws them, so a
    single-t corruption equals ``graph.sample_transition(x0, sigma, generator)``."""
    gen = torch.Generator().manual_seed(int(seed))
    u = torch.rand(length, generator=gen)
    if isinstance(graph, Absorbing):
        replacement = torch.full((length,), graph.mask_id, dtype=torch.long)
    else:
        replacement = torch.randint(0, graph.dim, (length,), generator=gen)
    return CoupledDraw(u=u, replacement=replacement)


def _decode(tokenizer: Tokenizer, ids: Sequence[int], mask: str) -> str:
    return tokenizer.decode(list(ids), mask=mask)


def _to_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)


# --- tokenize -----------------------------------------------------------------------------------


@dataclass
class TokenizeResult:
    """The ids of a text and one display piece per id."""

    text: str
    tokenizer: str  # kind: gpt2 | char | byte
    vocab_size: int
    ids: list[int]
    pieces: list[str]  # bytes that are not valid UTF-8 on their own are shown escaped (\xNN)
    n_tokens: int
    n_chars: int
    n_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def tokenize_text(text: str, tokenizer: str | Tokenizer = "gpt2") -> TokenizeResult:
    """Encode `text`; `tokenizer` is a Tokenizer or a name for `resolve_tokenizer`."""
    tok = resolve_tokenizer(tokenizer, text)
    ids = _encode(text, tok)
    return TokenizeResult(
        text=text,
        tokenizer=tok.kind,
        vocab_size=tok.vocab_size,
        ids=ids,
        pieces=tok.pieces(ids),
        n_tokens=len(ids),
        n_chars=len(text),
        n_bytes=len(text.encode("utf-8")),
    )


# --- noise --------------------------------------------------------------------------------------


@dataclass
class NoiseFrame:
    """The text at one time t of the forward process."""

    t: float
    sigma: float  # total noise sigma(t)
    dsigma: float  # its rate dsigma/dt
    move_chance: float  # 1 - e^(-sigma): probability that a token has moved by time t
    noisy_ids: list[int]
    flipped: list[int]  # positions whose id differs from the clean text
    hamming: int  # len(flipped)
    noisy_text: str  # decoded, masks absorbed as "" (the seed's view)
    noisy_text_shown: str  # decoded, masks drawn as MASK_GLYPH
    noisy_pieces: list[str]


@dataclass
class NoiseResult:
    """The forward process applied to a text at time t (and optionally at several t)."""

    text: str
    tokenizer: str
    vocab_size: int
    graph: str  # absorb | uniform
    schedule: str  # e.g. "LogLinearNoise(eps=0.001)"
    mask_id: int | None  # absorbing only: the mask id V
    seed: int
    ids: list[int]
    pieces: list[str]
    t: float
    sigma: float
    dsigma: float
    move_chance: float
    noisy_ids: list[int]
    flipped: list[int]
    hamming: int
    noisy_text: str
    noisy_text_shown: str
    noisy_pieces: list[str]
    frames: list[NoiseFrame] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def _frame(t: float, noise: Noise, draw: CoupledDraw, x0: torch.Tensor, tok: Tokenizer) -> NoiseFrame:
    sigma, dsigma, move = _schedule(noise, t)
    xt = draw.corrupt(x0, move)
    noisy = xt.tolist()
    flipped = (xt != x0).nonzero().flatten().tolist()
    return NoiseFrame(
        t=t,
        sigma=sigma,
        dsigma=dsigma,
        move_chance=move,
        noisy_ids=noisy,
        flipped=flipped,
        hamming=len(flipped),
        noisy_text=_decode(tok, noisy, ""),
        noisy_text_shown=_decode(tok, noisy, MASK_GLYPH),
        noisy_pieces=tok.pieces(noisy),
    )


def noise_text(
    text: str,
    t: float = 0.35,
    *,
    graph: str = "absorb",
    tokenizer: str | Tokenizer = "gpt2",
    seed: int = 0,
    frames: int | None = None,
) -> NoiseResult:
    """Corrupt `text` by the forward process of `graph` at time `t`.

    sigma = sigma(t) of the graph's schedule (`demo_graph`); each token moves with probability
    1 - e^(-sigma). With `frames` = N >= 2, also corrupt the text at N evenly spaced times from 0
    to 1 with the same coupled draw, so the corrupted set grows monotonically with t (the frame at
    a given t equals the single corruption at that t).
    """
    t = check_t(t)
    if frames is not None and not 2 <= int(frames) <= MAX_FRAMES:
        raise SeddError(f"--frames must be from 2 to {MAX_FRAMES} (the times run from 0 to 1), got {frames}")
    tok = resolve_tokenizer(tokenizer, text)
    ids = _encode(text, tok)
    g, noise = demo_graph(graph, tok.vocab_size)
    x0 = torch.tensor(ids, dtype=torch.long)  # [L]
    draw = coupled_draw(g, len(ids), seed)
    main = _frame(t, noise, draw, x0, tok)
    shown = []
    if frames is not None:
        times = torch.linspace(0.0, 1.0, int(frames), dtype=torch.float64).tolist()
        shown = [_frame(s, noise, draw, x0, tok) for s in times]
    return NoiseResult(
        text=text,
        tokenizer=tok.kind,
        vocab_size=tok.vocab_size,
        graph=graph,
        schedule=repr(noise),
        mask_id=g.mask_id if isinstance(g, Absorbing) else None,
        seed=int(seed),
        ids=ids,
        pieces=tok.pieces(ids),
        t=t,
        sigma=main.sigma,
        dsigma=main.dsigma,
        move_chance=main.move_chance,
        noisy_ids=main.noisy_ids,
        flipped=main.flipped,
        hamming=main.hamming,
        noisy_text=main.noisy_text,
        noisy_text_shown=main.noisy_text_shown,
        noisy_pieces=main.noisy_pieces,
        frames=shown,
    )


# --- cipher -------------------------------------------------------------------------------------


@dataclass
class CipherResult:
    """A Caesar shift of every token id next to diffusion corruptions of the same text.

    Rows: the shift of every id (Hamming distance n, unless SHIFT = 0 mod V); the absorbing
    corruption at time t (Hamming distance k, about (1 - eps) t n); and, for a comparison at the
    *same* Hamming distance k, the shift applied only at those k positions.
    """

    text: str
    tokenizer: str
    vocab_size: int
    shift: int
    seed: int
    t: float
    move_chance: float
    ids: list[int]
    pieces: list[str]
    # every id shifted
    shifted_ids: list[int]
    shifted_text: str
    shifted_pieces: list[str]
    shifted_hamming: int
    # diffusion (absorbing, LogLinear) at t
    diffused_ids: list[int]
    diffused_text: str  # masks drawn as MASK_GLYPH
    diffused_pieces: list[str]
    diffused_positions: list[int]
    diffused_hamming: int
    # the shift at the diffused positions only (same Hamming distance as the diffusion row)
    partial_ids: list[int]
    partial_text: str
    partial_pieces: list[str]
    partial_hamming: int

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


def cipher_text(
    text: str,
    shift: int = 1,
    tokenizer: str | Tokenizer = "gpt2",
    seed: int = 0,
    *,
    t: float = 0.35,
) -> CipherResult:
    """Shift every token id by `shift` (mod V) and decode, beside diffusion at time `t`.

    The shift x -> (x + shift) mod V changes every token (Hamming distance n) by the smallest
    possible step in id space, yet the decoded text is unrelated to the original: ids carry no
    notion of closeness. Diffusion instead corrupts each token with probability 1 - e^(-sigma(t))
    (absorbing graph, LogLinear schedule), so most of the text survives and the corrupted places
    are marked. The third row applies the shift at exactly the positions diffusion masked, so it
    has the same Hamming distance as the diffusion row: wrong tokens that look like text, where
    the mask says "unknown here".
    """
    t = check_t(t)
    tok = resolve_tokenizer(tokenizer, text)
    ids = _encode(text, tok)
    V = tok.vocab_size
    x0 = torch.tensor(ids, dtype=torch.long)  # [L]
    shifted = (x0 + int(shift) % V) % V  # reduce first: any integer shift, no int64 overflow
    g, noise = demo_graph("absorb", V)
    _, _, move = _schedule(noise, t)
    diffused = coupled_draw(g, len(ids), seed).corrupt(x0, move)
    positions = (diffused != x0).nonzero().flatten()
    partial = x0.clone()
    partial[positions] = shifted[positions]
    s_ids, d_ids, p_ids = shifted.tolist(), diffused.tolist(), partial.tolist()
    return CipherResult(
        text=text,
        tokenizer=tok.kind,
        vocab_size=V,
        shift=int(shift),
        seed=int(seed),
        t=t,
        move_chance=move,
        ids=ids,
        pieces=tok.pieces(ids),
        shifted_ids=s_ids,
        shifted_text=_decode(tok, s_ids, MASK_GLYPH),
        shifted_pieces=tok.pieces(s_ids),
        shifted_hamming=int((shifted != x0).sum()),
        diffused_ids=d_ids,
        diffused_text=_decode(tok, d_ids, MASK_GLYPH),
        diffused_pieces=tok.pieces(d_ids),
        diffused_positions=positions.tolist(),
        diffused_hamming=len(positions),
        partial_ids=p_ids,
        partial_text=_decode(tok, p_ids, MASK_GLYPH),
        partial_pieces=tok.pieces(p_ids),
        partial_hamming=int((partial != x0).sum()),
    )


# --- loss ---------------------------------------------------------------------------------------


@dataclass
class Prediction:
    id: int
    piece: str
    prob: float


@dataclass
class LossPosition:
    """One corrupted position: what was there, what the model proposes, what it costs."""

    position: int
    x0: int  # the clean id
    x0_piece: str
    xt: int  # the corrupted id (the mask id for the absorbing graph)
    score_entropy: float  # l at this position (nats, unweighted)
    weighted: float  # dsigma(t) * l
    true_prob: float  # the displayed probability of the clean id
    true_rank: int  # 1 = the model's top choice
    top: list[Prediction]


@dataclass
class LossResult:
    """The score-entropy loss of one text at one time t under a model."""

    text: str
    model: str
    graph: str
    schedule: str
    tokenizer: str
    vocab_size: int
    seed: int
    t: float
    sigma: float
    dsigma: float
    move_chance: float
    ids: list[int]
    noisy_ids: list[int]
    noisy_text: str  # masks drawn as MASK_GLYPH
    corrupted: list[int]  # positions whose id differs from the clean one
    log_score_shape: list[int]  # [batch, length, D]
    prob_note: str  # how the displayed probabilities are computed
    mass: list[float | None]  # absorbing: sum_{j<V} e(sigma) exp(s_j) per corrupted position; None: uniform
    per_token: list[float]  # score entropy l at every position (0 where unmasked, absorbing)
    loss: float  # sum_l dsigma(t) l  (nats for the sequence)
    loss_per_token: float  # loss / L
    positions: list[LossPosition]

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


_ABSORB_NOTE = (
    "p(x0 = j | xt) = e(sigma) exp(s_j) for the V real tokens (e(sigma) = e^sigma - 1), "
    "normalised to sum to 1 for display; 'mass' is the sum before normalising"
)
_UNIFORM_NOTE = (
    "exp(s_j) = the model's ratio p_t(j) / p_t(xt) at this position, normalised over all V ids "
    "for display (a distribution over the noisy token, not a posterior over x0)"
)


def _loss_positions(log_score, entropy, weighted, corrupted, ids, xt, graph, sigma, tok, top_k):
    """Per corrupted position: the model's top-k guesses for the clean token and the rank of the
    true one, from the log-score row ``[D]`` (absorbing: ``q = (e^sigma - 1) e^{s_j}`` over the V
    real ids, whose sum `mass` is 1 for a perfect model; uniform: a softmax of the row)."""
    k = min(int(top_k), tok.vocab_size)
    positions: list[LossPosition] = []
    masses: list[float | None] = []
    for pos in corrupted:
        row = log_score[0, pos]  # [D]
        if isinstance(graph, Absorbing):
            q = esigm1(sigma.double()) * row[: graph.vocab_size].double().exp()  # [V]
            mass = float(q.sum())
            probs = q / q.sum()
        else:
            mass = None
            probs = torch.softmax(row.double(), dim=-1)
        masses.append(mass)
        top_p, top_i = probs.topk(k)
        true_p = probs[ids[pos]]
        positions.append(
            LossPosition(
                position=pos,
                x0=ids[pos],
                x0_piece=tok.pieces([ids[pos]])[0],
                xt=int(xt[pos]),
                score_entropy=float(entropy[0, pos]),
                weighted=float(weighted[0, pos]),
                true_prob=float(true_p),
                true_rank=int((probs > true_p).sum()) + 1,
                top=[
                    Prediction(id=int(i), piece=tok.pieces([int(i)])[0], prob=float(p))
                    for p, i in zip(top_p.tolist(), top_i.tolist(), strict=True)
                ],
            )
        )
    return positions, masses


@torch.no_grad()
def loss_text(
    text: str,
    pretrained: Pretrained,
    t: float = 0.5,
    *,
    seed: int = 0,
    top_k: int = 5,
) -> LossResult:
    """Corrupt `text` at time `t`, run the model and evaluate the score-entropy loss.

    With sigma = sigma(t), x_t from the coupled draw of the model's graph and log-score
    s = model(x_t, sigma) of shape [1, L, D], the loss is

        loss = sum_l dsigma(t) * l(s_l, sigma, x_t[l], x0[l])       (sedd-spec §2.4-2.5)

    For the absorbing graph l = 0 at unmasked positions and, at a masked position,
    l = sum_{j<V} e^{s_j} - r s_{x0} + r (log r - 1) with r = 1 / (e^sigma - 1). With LogLinear
    noise and q_j = e(sigma) e^{s_j}: dsigma l = (1/t) (sum_j q_j - 1 - log q_{x0}), so an
    untrained model (zero output layer, q_j = 1/V) costs exactly (1/t) log V per masked token.
    """
    t = check_t(t)
    if int(top_k) < 1:
        raise SeddError(f"--top-k must be 1 or more, got {top_k}")
    model, graph, noise, tok = pretrained.model, pretrained.graph, pretrained.noise, pretrained.tokenizer
    ids = _encode(text, tok)
    L = len(ids)
    device = next(model.parameters()).device
    x0 = torch.tensor(ids, dtype=torch.long)  # [L]

    sigma_t, dsigma_t = noise(torch.tensor([t], dtype=torch.float32))  # [1], [1]
    move = float(-torch.expm1(-sigma_t.double()))
    xt = coupled_draw(graph, L, seed).corrupt(x0, move)  # [L]
    corrupted = (xt != x0).nonzero().flatten().tolist()

    model.eval()
    x0_b, xt_b = x0[None].to(device), xt[None].to(device)  # [1, L]
    sigma, dsigma = sigma_t.to(device), dsigma_t.to(device)  # [1]
    log_score = model(xt_b, sigma).float()  # [1, L, D]
    entropy = graph.score_entropy(log_score, sigma[:, None], xt_b, x0_b)  # [1, L]
    if isinstance(graph, Absorbing):
        # unmasked rows have l = 0 exactly; at t = 0 their log-scores hold inf (log e(0) = -inf)
        entropy = torch.where(xt_b == graph.mask_id, entropy, torch.zeros_like(entropy))
    weighted = dsigma[:, None] * entropy  # [1, L]
    loss = float(weighted.sum())

    positions, masses = _loss_positions(
        log_score, entropy, weighted, corrupted, ids, xt, graph, sigma, tok, top_k
    )
    noisy = xt.tolist()
    return LossResult(
        text=text,
        model=str(pretrained.source),
        graph="absorb" if isinstance(graph, Absorbing) else "uniform",
        schedule=repr(noise),
        tokenizer=tok.kind,
        vocab_size=tok.vocab_size,
        seed=int(seed),
        t=t,
        sigma=float(sigma_t),
        dsigma=float(dsigma_t),
        move_chance=move,
        ids=ids,
        noisy_ids=noisy,
        noisy_text=_decode(tok, noisy, MASK_GLYPH),
        corrupted=corrupted,
        log_score_shape=list(log_score.shape),
        prob_note=_ABSORB_NOTE if isinstance(graph, Absorbing) else _UNIFORM_NOTE,
        mass=masses,
        per_token=entropy[0].tolist(),
        loss=loss,
        loss_per_token=loss / L,
        positions=positions,
    )
