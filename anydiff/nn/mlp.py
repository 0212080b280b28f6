"""A residual MLP denoiser for vectors ``(B, D)``: toy 2-D data, feature vectors, pose vectors."""
from __future__ import annotations

from torch import Tensor, nn

from ._checks import check_data, check_dropout, check_positive_int
from .embeddings import Conditioning, FourierFeatures

__all__ = ["FiLMResidualBlock", "ResidualMLP", "modulate"]


def modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """Feature-wise affine modulation ``h * (1 + scale) + shift`` (FiLM, Perez et al. 2018).

    ``shift`` and ``scale`` broadcast against ``h``: (B, W) for ``h`` of shape (B, W), or
    (B, 1, W) for tokens ``h`` of shape (B, N, W). ``1 + scale`` makes zero the identity.
    """
    return h * (1 + scale) + shift


class FiLMResidualBlock(nn.Module):
    """Pre-norm residual block whose normalised input is FiLM-modulated by the conditioning vector.

    ``x + Linear(Dropout(SiLU(Linear(LN(x) * (1 + scale) + shift))))`` with
    ``(scale, shift) = Linear(SiLU(c))`` (feature-wise linear modulation, Perez et al. 2018; the
    adaptive LayerNorm of DiT, Peebles & Xie 2023, without the gate).

    Parameters
    ----------
    hidden : int; the width of ``x``.
    dropout : float; dropout probability after the activation.
    cond_width : int, optional; the width of ``c`` (default ``hidden``).
    """

    def __init__(self, hidden: int, dropout: float = 0.0, cond_width: int | None = None):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(cond_width or hidden, 2 * hidden))
        self.fc1 = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """``x`` (B, hidden), ``c`` (B, cond_width) -> (B, hidden)."""
        scale, shift = self.film(c).chunk(2, dim=-1)
        h = modulate(self.norm(x), shift, scale)
        return x + self.fc2(self.drop(self.act(self.fc1(h))))


class ResidualMLP(nn.Module):
    """Residual MLP denoiser ``model(x_t, t, cond=None) -> (B, D)`` for vector data.

    Optional periodic features of each coordinate (:class:`FourierFeatures`), ``Linear(., hidden)``,
    ``depth`` pre-norm residual blocks (He et al. 2016) (:class:`FiLMResidualBlock`) conditioned on
    ``c = TimeEmbedding(t) + ConditionEmbedding(cond)`` through FiLM scale and shift, then
    ``LayerNorm -> SiLU -> Linear(hidden, D)`` whose weight and bias start at zero, so the
    untrained model outputs exactly 0 (the zero-initialised output layer of DiT, Peebles & Xie
    2023). The input is cast to the parameter dtype and the output
    back to the dtype of ``x_t``.

    Parameters
    ----------
    dim : int; D, the width of the data.
    hidden : int; the width of the residual stream.
    depth : int; the number of residual blocks.
    dropout : float; dropout probability inside the blocks.
    time_embedding : ``"sinusoidal"`` or ``"fourier"``; see :class:`~anydiff.nn.TimeEmbedding`.
    fourier_features : int; frequencies per input coordinate (:class:`FourierFeatures`);
        0 (default) feeds the raw coordinates only.
    fourier_scale : float; standard deviation of those frequencies, in cycles per unit of x_t.
    num_classes : int, optional; class-conditional model (labels in [-1, num_classes), -1 = null).
    cond_dim : int, optional; model conditioned on float vectors of shape (B, cond_dim).
    cond_width : int, optional; the width of the conditioning vector ``c`` (default ``hidden``).
        Time is one number: a narrower ``c`` costs each block's FiLM layer ``2 hidden cond_width``
        instead of ``2 hidden^2`` multiply-adds per row, half of a block at ``cond_width = hidden``.
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 4, dropout: float = 0.0,
                 time_embedding: str = "sinusoidal", fourier_features: int = 0,
                 fourier_scale: float = 0.5, num_classes: int | None = None,
                 cond_dim: int | None = None, cond_width: int | None = None):
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.hidden = check_positive_int(hidden, "hidden")
        self.depth = check_positive_int(depth, "depth")
        self.cond_width = self.hidden if cond_width is None else check_positive_int(cond_width, "cond_width")
        self.conditioning = Conditioning(self.cond_width, time_embedding, num_classes, cond_dim)
        if isinstance(fourier_features, bool) or not isinstance(fourier_features, int) or fourier_features < 0:
            raise ValueError(f"fourier_features={fourier_features!r} must be a non-negative integer "
                             "(0 turns the features off)")
        self.features = FourierFeatures(self.dim, fourier_features, fourier_scale) if fourier_features else None
        self.inp = nn.Linear(self.features.out_dim if self.features else self.dim, self.hidden)
        self.blocks = nn.ModuleList(FiLMResidualBlock(self.hidden, check_dropout(dropout), self.cond_width)
                                    for _ in range(self.depth))
        self.out = nn.Sequential(nn.LayerNorm(self.hidden), nn.SiLU(),
                                 nn.Linear(self.hidden, self.dim))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x_t: Tensor, t: Tensor | float, cond: Tensor | None = None, *,
                cond_keep: Tensor | None = None) -> Tensor:
        """Predict from the noisy vectors ``x_t``.

        Parameters
        ----------
        x_t : Tensor, shape (B, D), float.
        t : Tensor of shape (B,) or a scalar; continuous time in [0, 1].
        cond : None, integer labels (B,) or float vectors (B, cond_dim).
        cond_keep : Tensor of shape (B,), bool or float, optional; rows where it is False / 0 are
            treated as unconditional (label dropout for classifier-free guidance).

        Returns
        -------
        Tensor, shape (B, D), the dtype of ``x_t``.
        """
        check_data(x_t, 2, self.dim, "dim", "(B, D)")
        c = self.conditioning(t, x_t.shape[0], cond, cond_keep)
        x = x_t.to(self.inp.weight.dtype)
        h = self.inp(self.features(x) if self.features is not None else x)
        for block in self.blocks:
            h = block(h, c)
        return self.out(h).to(x_t.dtype)
