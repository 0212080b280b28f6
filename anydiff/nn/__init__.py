"""Denoising networks for non-image data; they know nothing of noise schedules.

Every network is a callable ``model(x_t, t, cond=None, *, cond_keep=None) -> Tensor`` shaped like
``x_t``, with continuous time ``t`` in [0, 1] of shape (B,) (or a scalar):

- :class:`ResidualMLP` for vectors ``(B, D)``;
- :class:`Transformer` (DiT blocks) for tokens ``(B, N, C)``: point sets (permutation-equivariant)
  or ordered tokens with ``num_tokens``.

Only torch is imported here.
"""
from .embeddings import (
    ConditionEmbedding,
    Conditioning,
    FourierFeatures,
    TimeEmbedding,
    sinusoidal_features,
)
from .mlp import FiLMResidualBlock, ResidualMLP
from .transformer import DiTBlock, SelfAttention, Transformer, transformer_flops

__all__ = [
    "ConditionEmbedding",
    "Conditioning",
    "DiTBlock",
    "FiLMResidualBlock",
    "FourierFeatures",
    "ResidualMLP",
    "SelfAttention",
    "TimeEmbedding",
    "Transformer",
    "sinusoidal_features",
    "transformer_flops",
]
