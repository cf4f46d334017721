"""The DDiT score network (sedd-spec §3): a bidirectional transformer conditioned on sigma.

    x [B, L] --vocab_embed (+ pos_embed)--> h [B, L, d]   sigma [B] --sinusoid, MLP, SiLU--> c [B, cond]
    h --n_blocks x DDiTBlock(h, c, rotary)--> h --output_layer(h, c)--> z [B, L, D]
    s = z - log(e^sigma - 1) - log(D - 1)   (scale_by_sigma, absorbing graph only)
    s[b, l, x[b, l]] = 0                      (log-ratio of the current token to itself)

Time-independent variant (``model.time_conditioning: false``, RADD, sedd-spec §9; absorbing graph
only): no sigma embedding and no adaLN; every norm is a plain LayerNorm with weight and bias, and
the head is normalised over the V = D - 1 real tokens, log c = log_softmax(z[..., :V]), the
network's estimate of log p(x0 = j | unmasked tokens of x). Its log-score is analytic in sigma:

    s[..., j] = log c_j - log(e^sigma - 1)   (j < V)        s[..., M] = 0   (M = V, the mask)

so every sampler, loss and bound that reads `model(x, sigma)` works unchanged; `log_condition(x)`
gives log c without sigma. The mask column of the head (kept for RADD's layout) is never read.

Parameter names and shapes equal the reference implementations' (SEDD's, or RADD's for the
time-independent variant), so their published checkpoints load strictly by name. Attention runs
through `torch.nn.functional.scaled_dot_product_attention` (non-causal, no mask);
`attention="flash"` uses the flash-attn package when it is installed. On CUDA the blocks and the
output head run under bf16 autocast, with layer norms and rotary in fp32, as in the reference;
on CPU everything is float32 (the time-independent log-softmax always runs in float32).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .errors import SeddError
from .graph import esigm1, log_esigm1

__all__ = ["SEDD", "build_model", "count_parameters"]

FREQUENCY_EMBEDDING_SIZE = 256


class LayerNorm(nn.Module):
    """Parameter-free layer norm in fp32 (eps 1e-5, autocast off) times a learned weight, plus a
    learned bias (initialised to 0) when `bias` (the time-independent network's norms)."""

    def __init__(self, dim: int, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = F.layer_norm(x.float(), [self.dim])
        if self.bias is None:
            return x * self.weight
        return torch.addcmul(self.bias, x, self.weight)


class EmbeddingLayer(nn.Module):
    """Token embedding as a bare ``[D, d]`` parameter named ``embedding`` (reference layout)."""

    def __init__(self, dim: int, vocab_dim: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(vocab_dim, dim))
        nn.init.kaiming_uniform_(self.embedding, a=math.sqrt(5))  # U(-1/sqrt(d), 1/sqrt(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding[x]


class TimestepEmbedder(nn.Module):
    """sigma -> [cos(sigma f_k), sin(sigma f_k)] (cos first, f_k = 10000^(-k/128)) -> MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = FREQUENCY_EMBEDDING_SIZE):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        half = frequency_embedding_size // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        args = sigma.float()[:, None] * self.freqs[None]  # [B, 128]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # [B, 256]
        return self.mlp(embedding)


class Rotary(nn.Module):
    """Rotate-half (GPT-NeoX) rotary tables for positions 0..L-1, cached by length."""

    def __init__(self, head_dim: int, base: float = 10_000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq)  # persistent: part of the reference state dict
        self._cache: tuple[int, torch.device, torch.Tensor, torch.Tensor] | None = None

    def forward(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin tables ``[L, head_dim]`` in fp32."""
        c = self._cache
        if c is None or c[0] != length or c[1] != device or c[2].device != self.inv_freq.device:
            t = torch.arange(length, device=self.inv_freq.device, dtype=self.inv_freq.dtype)
            freqs = torch.outer(t, self.inv_freq)  # [L, head_dim / 2]
            emb = torch.cat([freqs, freqs], dim=-1)  # [L, head_dim]
            self._cache = c = (length, device, emb.cos().to(device), emb.sin().to(device))
        return c[2], c[3]


def _rotate_half(u: torch.Tensor) -> torch.Tensor:
    u1, u2 = u.chunk(2, dim=-1)
    return torch.cat([-u2, u1], dim=-1)


def _apply_rotary(u: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """u ``[B, L, H, hd]``; cos/sin ``[L, hd]``: u cos + rot(u) sin."""
    cos = cos[None, :, None, :]
    sin = sin[None, :, None, :]
    return u * cos + _rotate_half(u) * sin


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (1 + scale) + shift, in one pass over x."""
    return torch.addcmul(shift, x, 1 + scale)


_GELU_K = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def _sigmoid_2u(x: torch.Tensor) -> torch.Tensor:
    """sigmoid(2u), u = k (x + a x^3), in one new tensor (the ops after the first are in place)."""
    s = x * x
    return s.mul_(2 * _GELU_K * _GELU_A).add_(2 * _GELU_K).mul_(x).sigmoid_()


class _GeluTanhCPU(torch.autograd.Function):
    """GELU, tanh form, as ``x * sigmoid(2u)`` with ``u = k (x + a x^3)``, k = sqrt(2/pi), a = 0.044715.

    ``0.5 (1 + tanh u) = sigmoid(2u)`` exactly, so this is the same function as
    ``F.gelu(x, approximate="tanh")`` (equal to float32 rounding, about 5e-7); on CPU torch's
    tanh-GELU kernel is slower than this sigmoid form: 1.9x forward, 1.5x forward + backward
    (`benchmarks/cpu_kernels.py`, 1 thread).
    Backward: ``d/dx = s + x s (1 - s) 2k (1 + 3a x^2)`` with ``s = sigmoid(2u)``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        s = _sigmoid_2u(x)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, s = ctx.saved_tensors
        du = x * x
        du.mul_(2 * _GELU_K * 3 * _GELU_A).add_(2 * _GELU_K).mul_(x)  # 2u'(x) x
        ds = (1 - s).mul_(s).mul_(du)  # x s (1 - s) 2u'
        return ds.add_(s).mul_(grad)


class GeluTanh(nn.Module):
    """``nn.GELU(approximate="tanh")`` (the reference's), with the faster sigmoid form on CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda or x.dtype != torch.float32 or torch.compiler.is_compiling():
            return F.gelu(x, approximate="tanh")  # (compiled: inductor fuses it anyway)
        if not (torch.is_grad_enabled() and x.requires_grad):
            return _sigmoid_2u(x).mul_(x)  # inference: nothing saved
        return _GeluTanhCPU.apply(x)


def _flash_attention():
    try:
        from flash_attn import flash_attn_qkvpacked_func
    except ImportError:
        raise SeddError(
            "model.attention=flash needs the flash-attn package on a CUDA machine: "
            "pip install 'sedd-cli[flash]', or use model.attention=sdpa"
        ) from None
    return flash_attn_qkvpacked_func


class DDiTBlock(nn.Module):
    """Pre-LN transformer block with adaLN modulation and gating from the conditioning c.

    ``cond_dim=None``: the time-independent block (RADD's ``DDiTBlockWot``): no adaLN, norms with
    weight and bias, ungated residuals; call it with ``c=None``."""

    def __init__(
        self, dim: int, n_heads: int, cond_dim: int | None, mlp_ratio: int = 4, dropout: float = 0.1
    ):
        super().__init__()
        self.n_heads = n_heads
        plain = cond_dim is None
        self.norm1 = LayerNorm(dim, bias=plain)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.dropout1 = nn.Dropout(dropout)
        self.norm2 = LayerNorm(dim, bias=plain)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim, bias=True),
            GeluTanh(),
            nn.Linear(mlp_ratio * dim, dim, bias=True),
        )
        self.dropout2 = nn.Dropout(dropout)
        self.dropout = dropout
        if not plain:
            self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim, bias=True)
            nn.init.zeros_(self.adaLN_modulation.weight)
            nn.init.zeros_(self.adaLN_modulation.bias)
        self.attention = "sdpa"

    def forward(
        self, h: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], c: torch.Tensor | None
    ) -> torch.Tensor:
        if c is None:  # time-independent: h + attn(norm1 h), then + mlp(norm2 h)
            h = h + self.dropout1(self.attn_out(self._attend(self.norm1(h), rotary)))
            return h + self.dropout2(self.mlp(self.norm2(h)))
        # six [B, 1, d] chunks, in the reference order
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c)[
            :, None
        ].chunk(6, dim=2)

        o = self._attend(_modulate(self.norm1(h), shift_msa, scale_msa), rotary)
        h = torch.addcmul(h, gate_msa, self.dropout1(self.attn_out(o)))  # h + gate * attn
        m = self.mlp(_modulate(self.norm2(h), shift_mlp, scale_mlp))
        return torch.addcmul(h, gate_mlp, self.dropout2(m))

    def _attend(self, a: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Multi-head self-attention with rotary q, k on the normed input `a` ``[B, L, d]``, before
        the output projection."""
        B, L, d = a.shape
        H = self.n_heads
        qkv = self.attn_qkv(a).view(B, L, 3, H, d // H)  # 3d axis = all q, all k, all v
        with torch.autocast(a.device.type, enabled=False):
            cos, sin = rotary
            cos, sin = cos.to(qkv.dtype), sin.to(qkv.dtype)
            q = _apply_rotary(qkv[:, :, 0], cos, sin)
            k = _apply_rotary(qkv[:, :, 1], cos, sin)
        v = qkv[:, :, 2]
        if self.attention == "flash" and a.is_cuda:
            packed = torch.stack([q, k, v], dim=2).to(torch.bfloat16)  # [B, L, 3, H, hd]
            return _flash_attention()(packed, 0.0, causal=False).reshape(B, L, d)
        # SDPA wants [B, H, L, hd]
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return o.transpose(1, 2).reshape(B, L, d)


class DDitFinalLayer(nn.Module):
    """adaLN-modulated final norm and the zero-initialised output head Linear(d -> D).

    ``cond_dim=None``: RADD's ``DDitFinalLayerWot``, a plain LayerNorm (weight, bias), no adaLN."""

    def __init__(self, dim: int, out_dim: int, cond_dim: int | None):
        super().__init__()
        self.norm_final = LayerNorm(dim, bias=cond_dim is None)
        self.linear = nn.Linear(dim, out_dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        if cond_dim is not None:
            self.adaLN_modulation = nn.Linear(cond_dim, 2 * dim, bias=True)
            nn.init.zeros_(self.adaLN_modulation.weight)
            nn.init.zeros_(self.adaLN_modulation.bias)

    def modulated(self, h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """The head's input ``[B, L, d]`` (shift chunk first, then scale; c None: the plain norm)."""
        if c is None:
            return self.norm_final(h)
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)
        return _modulate(self.norm_final(h), shift, scale)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.linear(self.modulated(h, c))


class SEDD(nn.Module):
    """The score network. ``SEDD(cfg, dim)`` outputs log-scores over `dim` = D graph states.

    Call as ``model(x, sigma)`` with ids ``[B, L]`` and total noise ``[B]`` -> log-score
    ``[B, L, D]``. `features` + `head_logits` compute the output head on selected positions only.
    With ``cfg.time_conditioning`` false (`time_conditioned` False) the network ignores sigma and
    models the absorbing graph's conditional: `log_condition` / `head_log_condition`.
    """

    def __init__(self, cfg: ModelConfig, dim: int):
        super().__init__()
        self.config = cfg
        self.dim = dim
        self.time_conditioned = cfg.time_conditioning
        self.absorb_scale = cfg.scale_by_sigma
        self.vocab_embed = EmbeddingLayer(cfg.hidden_size, dim)
        if cfg.pos_embed:
            # optional learned absolute positions (not in the reference: rotary attention alone
            # sees only relative offsets, so with an all-mask input a position learns where it is
            # only from the edges of the sequence; padded records need absolute positions)
            self.pos_embed = nn.Parameter(0.02 * torch.randn(cfg.length, cfg.hidden_size))
        cond_dim = cfg.cond_dim if self.time_conditioned else None
        if self.time_conditioned:
            self.sigma_map = TimestepEmbedder(cfg.cond_dim)
        self.rotary_emb = Rotary(cfg.hidden_size // cfg.n_heads)
        self.blocks = nn.ModuleList(
            [
                DDiTBlock(cfg.hidden_size, cfg.n_heads, cond_dim, cfg.mlp_ratio, cfg.dropout)
                for _ in range(cfg.n_blocks)
            ]
        )
        self.output_layer = DDitFinalLayer(cfg.hidden_size, dim, cond_dim)
        self.amp = True  # bf16 autocast on CUDA (never on CPU)
        self.set_attention(cfg.attention)

    def set_attention(self, backend: str) -> None:
        """Choose ``sdpa`` or ``flash`` for every block."""
        if backend == "flash":
            _flash_attention()
        for block in self.blocks:
            block.attention = backend

    def _autocast(self, x: torch.Tensor):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp and x.is_cuda)

    def features(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """The output head's input ``[B, L, d]`` (after the final norm, adaLN-modulated when the
        network is time-conditioned; a time-independent one ignores `sigma`, which may be None)."""
        h = self.vocab_embed(x)  # [B, L, d]
        if self.config.pos_embed:
            if x.shape[1] > self.pos_embed.shape[0]:
                raise SeddError(
                    f"sequence length {x.shape[1]} exceeds the model's trained length "
                    f"{self.pos_embed.shape[0]} (it has absolute position embeddings)"
                )
            h = h + self.pos_embed[: x.shape[1]]
        c = F.silu(self.sigma_map(sigma)) if self.time_conditioned else None  # [B, cond]
        rotary = self.rotary_emb(x.shape[1], x.device)
        with self._autocast(x):
            for block in self.blocks:
                h = block(h, rotary, c)
            return self.output_layer.modulated(h, c)

    def _offset(self, sigma: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """log(e^sigma - 1) + log(D - 1), per batch element, cast to the output dtype."""
        return (esigm1(sigma).log() + math.log(self.dim - 1)).to(dtype)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        a = self.features(x, sigma)
        if not self.time_conditioned:
            log_c = self.head_log_condition(a)  # [B, L, V]
            s = log_c - log_esigm1(sigma.float())[:, None, None]
            z = torch.cat([s, torch.zeros_like(s[..., :1])], dim=-1)  # mask column: score 1
        else:
            with self._autocast(x):
                z = self.output_layer.linear(a)  # [B, L, D]
            if self.absorb_scale:
                z = z - self._offset(sigma, z.dtype)[:, None, None]
        return torch.scatter(z, -1, x[..., None], torch.zeros_like(z[..., :1]))

    def _need_time_independent(self, what: str) -> None:
        if self.time_conditioned:
            raise SeddError(f"{what} needs a time-independent model (model.time_conditioning=false)")

    def log_condition(self, x: torch.Tensor) -> torch.Tensor:
        """log c ``[B, L, V]`` (float32): the time-independent network's log p(x0 = j | the unmasked
        tokens of x) for every position and real token j < V = D - 1 (meaningful at masked
        positions). No sigma: one call serves every time at which x is the state."""
        self._need_time_independent("log_condition")
        return self.head_log_condition(self.features(x))

    def head_log_condition(self, a: torch.Tensor) -> torch.Tensor:
        """log c on selected rows: head input `a` ``[..., d]`` -> ``[..., V]`` float32, the log-softmax
        of the head's V real-token columns (its mask column is never computed)."""
        self._need_time_independent("head_log_condition")
        V = self.dim - 1
        weight, bias = self.output_layer.linear.weight[:V], self.output_layer.linear.bias[:V]
        with self._autocast(a):
            z = F.linear(a, weight, bias)
        return z.float().log_softmax(dim=-1)

    def head_logits(
        self, a: torch.Tensor, sigma: torch.Tensor, columns: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw head output for selected rows, without post-processing: `a` ``[N, d]``, `sigma`
        ``[N]`` -> ``z [N, columns]`` (the first `columns` states, all when None) and the per-row
        ``offset [N]`` (float32) = log(e^sigma - 1) + log(D - 1) with scale_by_sigma, else 0.

        The log-score is ``z - offset`` except at the current token, where it is 0. The absorbing
        loss and sampler at masked rows need only the V real-token columns (the mask column is the
        current token there), so they skip the mask column, the scatter and the shifted copy.

        Time-independent network: z = log c (normalised over the V real tokens, so gradients flow
        through the normaliser; callers treat `offset` as a constant), offset = log(e^sigma - 1),
        and the mask column, when asked for, is z = offset (log-score 0).
        """
        if not self.time_conditioned:
            offset = log_esigm1(sigma.float())
            z = self.head_log_condition(a)  # [N, V]
            if columns is None or columns > z.shape[-1]:
                z = torch.cat([z, offset[:, None]], dim=-1)
            return z[:, :columns], offset
        weight, bias = self.output_layer.linear.weight, self.output_layer.linear.bias
        if columns is not None:
            weight, bias = weight[:columns], bias[:columns]  # leading rows: contiguous views
        with self._autocast(a):
            z = F.linear(a, weight, bias)
        if self.absorb_scale:
            offset = self._offset(sigma, torch.float32)
        else:
            offset = torch.zeros(a.shape[0], dtype=torch.float32, device=a.device)
        return z, offset


def build_model(cfg: ModelConfig, dim: int) -> SEDD:
    """A freshly initialised score network with output dimension `dim` (= graph.dim)."""
    return SEDD(cfg, dim)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
