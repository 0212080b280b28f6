"""A DiT-style transformer denoiser over tokens ``(B, N, C)``: point sets, joints, table columns.

Blocks follow DiT (Peebles & Xie 2023) with adaptive LayerNorm-Zero: the conditioning vector ``c``
(time embedding + condition embedding) yields shift, scale and gate for the attention and the MLP
branch through a zero-initialised Linear, so every block starts as the identity and the zero
output layer makes the untrained model output exactly 0.

Without ``num_tokens`` there is no positional information at all, so the network is
permutation-equivariant over tokens (a set model, as point clouds need; Lee et al. 2019). With
``num_tokens`` a learned per-token embedding tells ordered tokens (joints, columns) apart.
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_data, check_dropout, check_positive_int
from .embeddings import Conditioning
from .mlp import modulate

__all__ = ["DiTBlock", "SelfAttention", "Transformer", "transformer_flops"]


def _layer_norm(width: int) -> nn.LayerNorm:
    """LayerNorm without affine parameters: adaLN supplies the scale and shift."""
    return nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)


def _ada_ln(width: int, n_out: int) -> nn.Sequential:
    """``SiLU -> Linear(width, n_out * width)``, weight and bias zero (adaLN-Zero)."""
    layer = nn.Linear(width, n_out * width)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return nn.Sequential(nn.SiLU(), layer)


class SelfAttention(nn.Module):
    """Multi-head self-attention (Vaswani et al. 2017) with a fused qkv projection.

    Uses ``F.scaled_dot_product_attention``, so flash / memory-efficient kernels run on GPU.

    Parameters
    ----------
    width : int; token width W, divisible by ``heads``.
    heads : int; the number of heads.
    dropout : float; attention-weight dropout in training.
    """

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (B, N, W) -> (B, N, W)."""
        B, N, W = x.shape
        # (B, N, 3W) -> 3 x (B, heads, N, W / heads)
        qkv = self.qkv(x).view(B, N, 3, self.heads, W // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        p = self.dropout if self.training else 0.0
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.proj(o.transpose(1, 2).reshape(B, N, W))


class DiTBlock(nn.Module):
    """DiT block with adaLN-Zero (Peebles & Xie 2023).

    ``x + gate_a * Attn(modulate(LN(x), shift_a, scale_a))``, then
    ``x + gate_m * MLP(modulate(LN(x), shift_m, scale_m))``, with the six modulations
    ``Linear(SiLU(c))`` starting at zero. The MLP is ``Linear(W, H) -> GELU(tanh) -> Dropout ->
    Linear(H, W)``.

    Parameters
    ----------
    width : int; token width W.
    heads : int; attention heads.
    mlp_hidden : int; H.
    dropout : float; attention and MLP dropout.
    """

    def __init__(self, width: int, heads: int, mlp_hidden: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = _layer_norm(width)
        self.attn = SelfAttention(width, heads, dropout)
        self.norm2 = _layer_norm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_hidden), nn.GELU(approximate="tanh"),
                                 nn.Dropout(dropout), nn.Linear(mlp_hidden, width))
        self.ada_ln = _ada_ln(width, 6)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """``x`` (B, N, W), ``c`` (B, 1, W) -> (B, N, W)."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.ada_ln(c).chunk(6, dim=-1)
        x = x + gate_a * self.attn(modulate(self.norm1(x), shift_a, scale_a))
        return x + gate_m * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class Transformer(nn.Module):
    """Token transformer denoiser ``model(x_t, t, cond=None) -> (B, N, C)``.

    Per-token ``Linear(C, width)``, an optional learned per-token embedding, ``depth``
    :class:`DiTBlock` s, and a final adaLN-modulated LayerNorm with ``Linear(width, C)``, both
    starting at zero.

    Parameters
    ----------
    channels : int; C, the features per token (3 for point sets).
    width : int; token width W.
    depth : int; the number of blocks.
    heads : int; attention heads, must divide ``width``.
    mlp_ratio : float; MLP hidden width is ``int(width * mlp_ratio)``.
    dropout : float; attention and MLP dropout.
    num_tokens : int, optional; a learned embedding per token position; inputs must then have
        exactly ``num_tokens`` tokens. None (default): no positional information, the network is
        permutation-equivariant over tokens.
    time_embedding : ``"sinusoidal"`` or ``"fourier"``.
    num_classes, cond_dim : int, optional; class-label or continuous conditioning (at most one).
    """

    def __init__(self, channels: int, width: int = 256, depth: int = 6, heads: int = 8,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, num_tokens: int | None = None,
                 time_embedding: str = "sinusoidal", num_classes: int | None = None,
                 cond_dim: int | None = None):
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        self.width = check_positive_int(width, "width")
        self.depth = check_positive_int(depth, "depth")
        self.heads = check_positive_int(heads, "heads")
        if self.width % self.heads:
            raise ValueError(f"heads={heads} must divide width={width}; use a width that is a "
                             "multiple of heads")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, numbers.Real) \
                or int(self.width * mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio={mlp_ratio!r} must be positive, with "
                             "int(width * mlp_ratio) >= 1")
        self.mlp_hidden = int(self.width * mlp_ratio)
        dropout = check_dropout(dropout)
        self.num_tokens = check_positive_int(num_tokens, "num_tokens", optional=True)

        self.conditioning = Conditioning(self.width, time_embedding, num_classes, cond_dim)
        self.inp = nn.Linear(self.channels, self.width)
        self.pos = None
        if self.num_tokens is not None:
            self.pos = nn.Parameter(0.02 * torch.randn(self.num_tokens, self.width))
        self.blocks = nn.ModuleList(DiTBlock(self.width, self.heads, self.mlp_hidden, dropout)
                                    for _ in range(self.depth))
        self.norm_out = _layer_norm(self.width)
        self.ada_ln_out = _ada_ln(self.width, 2)
        self.out = nn.Linear(self.width, self.channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_t: Tensor, t: Tensor | float, cond: Tensor | None = None, *,
                cond_keep: Tensor | None = None) -> Tensor:
        """Predict from the noisy tokens ``x_t``.

        Parameters
        ----------
        x_t : Tensor, shape (B, N, C), float; N must equal ``num_tokens`` when that was given.
        t : Tensor of shape (B,) or a scalar; continuous time in [0, 1].
        cond : None, integer labels (B,) or float vectors (B, cond_dim).
        cond_keep : Tensor of shape (B,), bool or float, optional; rows where it is False / 0 are
            treated as unconditional (label dropout for classifier-free guidance).

        Returns
        -------
        Tensor, shape (B, N, C), the dtype of ``x_t``.
        """
        check_data(x_t, 3, self.channels, "channels", "(B, N, C)")
        if self.num_tokens is not None and x_t.shape[1] != self.num_tokens:
            raise ValueError(f"x_t has {x_t.shape[1]} tokens but the model was built with "
                             f"num_tokens={self.num_tokens}; build it with "
                             f"num_tokens={x_t.shape[1]}, or num_tokens=None for a set model")
        c = self.conditioning(t, x_t.shape[0], cond, cond_keep)[:, None, :]  # (B, 1, W)
        h = self.inp(x_t.to(self.inp.weight.dtype))
        if self.pos is not None:
            h = h + self.pos
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.ada_ln_out(c).chunk(2, dim=-1)
        return self.out(modulate(self.norm_out(h), shift, scale)).to(x_t.dtype)


def transformer_flops(model: Transformer, n_tokens: int) -> int:
    """Forward-pass FLOPs per sample of ``model`` on ``n_tokens`` tokens.

    Counts ``2 * multiply-adds`` of every Linear layer (per token: input, qkv, attention output,
    MLP, output; per sample: time / condition MLPs and adaLN modulations) plus the attention
    matmuls ``2 * 2 * N^2 * W`` per block (``Q K^T`` and ``A V``), the convention of Kaplan et al.
    (2020) and of ``torch.utils.flop_counter``. Normalisations, activations and biases are left
    out. The condition MLP is counted when the model has ``cond_dim`` (it runs whenever ``cond``
    is given). Divide ``3 * flops * samples`` (forward + backward) by the step time for TFLOP/s.

    Parameters
    ----------
    model : Transformer.
    n_tokens : int; N.

    Returns
    -------
    int, FLOPs per sample.
    """
    if not isinstance(model, Transformer):
        raise ValueError(f"model must be an anydiff.nn.Transformer, got {type(model).__name__}")
    N = check_positive_int(n_tokens, "n_tokens")
    C, W, H, L = model.channels, model.width, model.mlp_hidden, model.depth
    per_token = C * W + L * (3 * W * W + W * W + 2 * W * H) + W * C
    attention = L * 2 * N * N * W
    per_sample = sum(m.in_features * m.out_features for m in model.conditioning.modules()
                     if isinstance(m, nn.Linear))
    per_sample += L * W * 6 * W + W * 2 * W
    return 2 * (N * per_token + attention + per_sample)
