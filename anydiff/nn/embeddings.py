"""Time and condition embeddings: the conditioning vector every denoiser is steered by.

A denoiser sees the noise level through continuous time ``t`` in [0, 1] and, optionally, a
condition (a class label or a continuous vector). :class:`Conditioning` turns both into one vector
``c = TimeEmbedding(t) + ConditionEmbedding(cond)`` of width ``hidden`` (the sum is the DiT
recipe, Peebles & Xie 2023), which the networks feed to every block.

Classifier-free guidance (Ho & Salimans 2022) needs an unconditional model too: a learned "null"
embedding stands for "no condition", and ``keep`` swaps it in row by row with ``torch.where``, so
label dropout in training keeps every tensor shape fixed (CUDA-graph capturable).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._checks import (
    check_choice,
    check_labels,
    check_positive_int,
    check_rows,
    check_time,
)

__all__ = [
    "TIME_EMBEDDINGS",
    "ConditionEmbedding",
    "Conditioning",
    "FourierFeatures",
    "TimeEmbedding",
    "sinusoidal_features",
]

TIME_EMBEDDINGS = ("sinusoidal", "fourier")


def sinusoidal_features(t: Tensor, dim: int, max_period: float = 10000.0,
                        scale: float = 1000.0) -> Tensor:
    """Sinusoidal features of ``scale * t``, half sines then half cosines.

    The transformer position encoding (Vaswani et al. 2017) used for the diffusion step in DDPM
    (Ho et al. 2020): frequencies ``max_period ** (-k / (dim/2))`` for ``k = 0 .. dim/2 - 1``.
    ``scale = 1000`` maps continuous ``t`` in [0, 1] onto the usual step range.

    Parameters
    ----------
    t : Tensor, shape (B,), float.
    dim : int, even; the number of features.

    Returns
    -------
    Tensor, shape (B, dim), the dtype of ``t``.
    """
    half = dim // 2
    k = torch.arange(half, device=t.device, dtype=t.dtype)
    freqs = torch.exp(-math.log(max_period) * k / half)
    args = (scale * t)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class TimeEmbedding(nn.Module):
    """Embed continuous time ``t`` in [0, 1]: fixed features, then a two-layer MLP.

    ``kind="sinusoidal"``: :func:`sinusoidal_features` of ``1000 t`` (Vaswani et al. 2017; Ho et
    al. 2020). ``kind="fourier"``: Gaussian random Fourier features ``[sin 2 pi W t, cos 2 pi W t]``
    with ``W ~ N(0, fourier_scale^2)`` (Tancik et al. 2020; Song et al. 2021), a fixed buffer drawn
    from a local generator seeded with ``seed``, so construction is deterministic and leaves the
    global random state alone. The features go through ``Linear(dim, hidden) -> SiLU ->
    Linear(hidden, hidden)``.

    Parameters
    ----------
    dim : int, even; the number of fixed features.
    kind : ``"sinusoidal"`` or ``"fourier"``.
    fourier_scale : float; standard deviation of the Fourier frequencies (``kind="fourier"``).
    hidden : int, optional; output width (default ``dim``).
    seed : int; seed of the Fourier frequencies.
    """

    def __init__(self, dim: int, kind: str = "sinusoidal", fourier_scale: float = 16.0, *,
                 hidden: int | None = None, seed: int = 0):
        super().__init__()
        dim = check_positive_int(dim, "dim")
        if dim % 2:
            raise ValueError(f"dim={dim} must be even (half sines, half cosines); "
                             f"use dim={dim + 1}")
        self.kind = check_choice(kind, "kind", TIME_EMBEDDINGS)
        hidden = dim if hidden is None else check_positive_int(hidden, "hidden")
        self.dim, self.hidden = dim, hidden
        if kind == "fourier":
            if not fourier_scale > 0:
                raise ValueError(f"fourier_scale={fourier_scale!r} must be positive")
            gen = torch.Generator().manual_seed(seed)
            self.register_buffer("freqs", fourier_scale * torch.randn(dim // 2, generator=gen))
        else:
            self.register_buffer("freqs", None)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def features(self, t: Tensor) -> Tensor:
        """The fixed (untrained) features of ``t``: shape (B,) float32 -> (B, dim) float32."""
        if self.freqs is None:
            return sinusoidal_features(t, self.dim)
        args = (2 * math.pi) * t[:, None] * self.freqs.to(torch.float32)[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)

    def forward(self, t: Tensor | float, batch_size: int | None = None) -> Tensor:
        """Embed ``t``.

        Parameters
        ----------
        t : Tensor of shape (B,) or a scalar (tensor or number), broadcast to ``batch_size``.
        batch_size : int, optional; B (needed only to broadcast a scalar to more than one row).

        Returns
        -------
        Tensor, shape (B, hidden), the dtype of the MLP weights (or the autocast dtype).
        """
        t = check_time(t, batch_size, self.mlp[0].weight.device)
        # Features in float32 whatever the model dtype: 1000 t in bfloat16 would lose the step.
        feats = self.features(t)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


class FourierFeatures(nn.Module):
    """Periodic features of each input coordinate: ``[x, sin(2 pi W x), cos(2 pi W x)]``.

    Coordinate ``j`` gets ``n_frequencies`` fixed frequencies ``W[j] ~ N(0, scale^2)`` (random
    Fourier features, Tancik et al. 2020, applied per feature as in the periodic embeddings of
    Gorishniy et al. 2022). A plain MLP on raw coordinates is biased towards smooth functions and
    learns sharp structure (cell edges, thin arms) slowly; these features let the first layer see
    it. The raw input is kept, so nothing is lost. The frequencies are a buffer drawn from a local
    generator seeded with ``seed``: construction is deterministic and leaves the global random
    state alone.

    Parameters
    ----------
    dim : int; D, the number of input coordinates.
    n_frequencies : int; frequencies per coordinate.
    scale : float; standard deviation of the frequencies (cycles per unit of the input).
    seed : int; seed of the frequencies.

    The output has ``out_dim = dim * (1 + 2 * n_frequencies)`` columns.
    """

    def __init__(self, dim: int, n_frequencies: int = 16, scale: float = 0.5, *, seed: int = 0):
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.n_frequencies = check_positive_int(n_frequencies, "n_frequencies")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale={scale!r} must be a positive number (cycles per unit of the input)")
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", scale * torch.randn(self.dim, self.n_frequencies, generator=gen))
        self.out_dim = self.dim * (1 + 2 * self.n_frequencies)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (B, dim) -> (B, out_dim), in the dtype of ``x``."""
        args = (2 * math.pi) * x[:, :, None] * self.freqs.to(x.dtype)[None]
        return torch.cat([x, torch.sin(args).flatten(1), torch.cos(args).flatten(1)], dim=-1)


class ConditionEmbedding(nn.Module):
    """Embed a class label or a continuous condition vector, with a learned null embedding.

    Class labels use an ``nn.Embedding`` with ``num_classes + 1`` rows, the last being the null
    class; label ``-1`` means null too. Continuous conditions of shape (B, cond_dim) go through
    ``Linear(cond_dim, hidden) -> SiLU -> Linear(hidden, hidden)`` and a learned null vector stands
    for "no condition". Give exactly one of ``num_classes`` and ``cond_dim``. Embedding rows start
    at ``N(0, 0.02^2)`` as in DiT (Peebles & Xie 2023).

    Parameters
    ----------
    hidden : int; output width.
    num_classes : int, optional; the number of classes.
    cond_dim : int, optional; the width of continuous condition vectors.
    """

    def __init__(self, hidden: int, num_classes: int | None = None, cond_dim: int | None = None):
        super().__init__()
        self.hidden = check_positive_int(hidden, "hidden")
        if (num_classes is None) == (cond_dim is None):
            raise ValueError("give exactly one of num_classes (class labels) and cond_dim "
                             "(continuous condition vectors)")
        self.num_classes = check_positive_int(num_classes, "num_classes", optional=True)
        self.cond_dim = check_positive_int(cond_dim, "cond_dim", optional=True)
        if self.num_classes is not None:
            self.table = nn.Embedding(self.num_classes + 1, hidden)
            nn.init.normal_(self.table.weight, std=0.02)
        else:
            self.mlp = nn.Sequential(nn.Linear(self.cond_dim, hidden), nn.SiLU(),
                                     nn.Linear(hidden, hidden))
            self.null = nn.Parameter(0.02 * torch.randn(hidden))

    def null_embedding(self) -> Tensor:
        """The learned embedding of "no condition", shape (hidden,)."""
        return self.table.weight[-1] if self.num_classes is not None else self.null

    def forward(self, cond: Tensor | None, batch_size: int, keep: Tensor | None = None) -> Tensor:
        """Embed ``cond``, with the null embedding wherever there is no condition.

        Parameters
        ----------
        cond : None, integer labels of shape (B,) in [-1, num_classes), or float (B, cond_dim).
            None gives the null embedding in every row.
        batch_size : int; B.
        keep : Tensor of shape (B,), bool or float, optional; rows where ``keep`` is False / 0 get
            the null embedding (label dropout for classifier-free guidance).

        Returns
        -------
        Tensor, shape (B, hidden).
        """
        null = self.null_embedding()
        if keep is not None:
            check_rows(keep, "cond_keep", batch_size)
        if cond is None:
            return null.expand(batch_size, self.hidden)
        if self.num_classes is not None:
            check_labels(cond, batch_size, self.num_classes)
            emb = self.table(torch.where(cond < 0, self.num_classes, cond))
        else:
            if not torch.is_tensor(cond) or not cond.is_floating_point():
                raise ValueError("cond must be a float tensor of shape "
                                 f"({batch_size}, {self.cond_dim})")
            if cond.ndim == 2 and cond.shape[1] != self.cond_dim:
                raise ValueError(f"cond has width {cond.shape[1]} but the model was built "
                                 f"with cond_dim={self.cond_dim}; "
                                 f"build it with cond_dim={cond.shape[1]}")
            check_rows(cond, "cond", batch_size, self.cond_dim)
            emb = self.mlp(cond.to(self.mlp[0].weight.dtype))
        if keep is None:
            return emb
        return torch.where((keep != 0)[:, None], emb, null.to(emb.dtype))


class Conditioning(nn.Module):
    """The conditioning vector ``c = TimeEmbedding(t) + ConditionEmbedding(cond)`` of a denoiser.

    Parameters
    ----------
    hidden : int; the width of ``c`` (and, rounded up to even, of the sinusoidal / Fourier
        features).
    time_embedding : ``"sinusoidal"`` or ``"fourier"``; see :class:`TimeEmbedding`.
    num_classes, cond_dim : int, optional; at most one; see :class:`ConditionEmbedding`. With
        neither, the model is unconditional and refuses ``cond``.
    """

    def __init__(self, hidden: int, time_embedding: str = "sinusoidal",
                 num_classes: int | None = None, cond_dim: int | None = None):
        super().__init__()
        kind = check_choice(time_embedding, "time_embedding", TIME_EMBEDDINGS)
        # as many fixed features as the width, rounded up to an even number
        self.time = TimeEmbedding(hidden + hidden % 2, kind, hidden=hidden)
        self.cond = None
        if num_classes is not None or cond_dim is not None:
            self.cond = ConditionEmbedding(hidden, num_classes, cond_dim)

    def forward(self, t: Tensor | float, batch_size: int, cond: Tensor | None = None,
                keep: Tensor | None = None) -> Tensor:
        """Return ``c``, shape (B, hidden), from ``t`` (B,) or scalar and an optional ``cond``.

        ``keep`` (B,) bool/float replaces the condition of rows where it is False / 0 by the null
        embedding; see :meth:`ConditionEmbedding.forward`.
        """
        c = self.time(t, batch_size)
        if self.cond is None:
            if cond is not None or keep is not None:
                name = "cond" if cond is not None else "cond_keep"
                raise ValueError(f"{name} was given but the model was built without conditioning; "
                                 "build it with num_classes=... or cond_dim=...")
            return c
        return c + self.cond(cond, batch_size, keep).to(c.dtype)
