"""Latent diffusion for sets: an encoder, a pointwise conditional decoder and a prior over latents.

A set (a point cloud, a bag of feature vectors) ``x`` of shape ``(N, D)`` is summarized by an
encoder into one latent vector ``z`` of ``latent_dim`` numbers; a *decoder* diffusion model
``model(x_t, t, cond=z)`` denoises every element of the set independently given ``z``; and a
second diffusion model, the *prior*, generates new latents. Sampling draws ``z`` from the prior,
then any number of elements from the decoder given ``z``. This is the recipe of DPM (Luo & Hu,
"Diffusion Probabilistic Models for 3D Point Cloud Generation", CVPR 2021: a PointNet encoder,
a pointwise reverse diffusion conditioned on the shape latent, a variational objective) and of
LION (Zeng et al., "LION: Latent Point Diffusion Models for 3D Shape Generation", NeurIPS 2022:
a variational encoder and a separate diffusion model over the shape latents).

The pieces are modality-agnostic: the encoder is any module mapping ``(B, N, D)`` to
``(B, latent_dim)`` (``(B, 2 latent_dim)``, mean and log-variance, when variational), the
decoder any vector denoiser taking float conditions, the prior any vector denoiser (class labels
optional). The defaults are :class:`SetEncoder` (PointNet: a shared MLP per element, max and mean
pooling, an MLP head; Qi et al. 2017) and two :class:`anydiff.nn.ResidualMLP`.

Training runs in two stages, each with :class:`anydiff.training.Trainer` (AdamW, warm-up and
cosine decay, EMA of the weights):

1. the encoder and the decoder jointly, on the denoising loss of the elements of each set given
   the set's own latent (sampled from the posterior when variational), plus
   ``kl_weight * KL(q(z|x) || N(0, I))`` per set. The trainer calls ``model(x_t, t, cond)``; the
   clean sets travel in ``cond`` (flattened), which is how the encoder sees them;
2. the encoder (frozen, its EMA weights) maps each training set to its posterior mean; the
   latents are standardized per dimension (the statistics are buffers of the module) and the
   prior is trained on them, with class labels and label dropout when given (classifier-free
   guidance at sampling).

Because the encoder pools over elements and the decoder is pointwise, the model is
permutation-invariant in what it encodes and permutation-equivariant in what it generates, by
construction.
"""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from torch import Tensor, nn

from .nn import ResidualMLP
from .nn._checks import check_positive_int
from .sampling import sample as _sample
from .schedules import Schedule
from .training import Trainer

__all__ = ["SetEncoder", "LatentDiffusion"]

LOGVAR_RANGE = (-30.0, 20.0)  # clamp of the encoder's log-variance (exp stays finite in float32)


class SetEncoder(nn.Module):
    """A permutation-invariant set encoder (PointNet, Qi et al. 2017): ``(B, N, dim) -> (B, out)``.

    A shared MLP ``depth`` x (Linear -> SiLU) of width ``hidden`` is applied to every element,
    the features are pooled over the set by max and by mean (concatenated), and an MLP head
    ``LayerNorm -> Linear -> SiLU -> Linear`` maps them to ``latent_dim`` numbers, or to
    ``2 latent_dim`` (mean, then log-variance) when ``variational``. Max pooling is exactly
    invariant to the order of the elements; mean pooling up to float rounding. The log-variance
    output's bias starts at ``init_logvar`` (a narrow posterior at first, so the decoder learns
    to use the latent before the KL term widens it).

    Parameters
    ----------
    dim : int; D, the width of an element.
    latent_dim : int.
    hidden : int; the width of the per-element features.
    depth : int; layers of the shared MLP.
    variational : bool; output mean and log-variance.
    init_logvar : float; the log-variance bias at initialization.
    """

    def __init__(self, dim: int, latent_dim: int, hidden: int = 128, depth: int = 2, *,
                 variational: bool = True, init_logvar: float = -4.0):
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        hidden = check_positive_int(hidden, "hidden")
        depth = check_positive_int(depth, "depth")
        self.variational = bool(variational)
        layers, width = [], self.dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.elementwise = nn.Sequential(*layers)
        self.out_dim = 2 * self.latent_dim if self.variational else self.latent_dim
        self.head = nn.Sequential(nn.LayerNorm(2 * hidden), nn.Linear(2 * hidden, hidden), nn.SiLU(),
                                  nn.Linear(hidden, self.out_dim))
        if self.variational:
            with torch.no_grad():
                self.head[-1].bias[self.latent_dim:].fill_(float(init_logvar))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (B, N, dim) with N >= 1 -> (B, out_dim)."""
        if not torch.is_tensor(x) or x.ndim != 3 or x.shape[-1] != self.dim or x.shape[1] < 1:
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (B, N, {self.dim}) with N >= 1, got {got}")
        h = self.elementwise(x.to(self.head[1].weight.dtype))
        return self.head(torch.cat([h.amax(dim=1), h.mean(dim=1)], dim=-1)).to(x.dtype)


def _kl_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` per row, summed over the latent dimensions."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1)


class _AutoencoderObjective(nn.Module):
    """Stage 1 as a denoiser for :class:`Trainer`: ``forward(x_t, t, cond)`` with the clean sets,
    flattened to ``(B, N * D)``, in ``cond``. Encodes them (a posterior sample when variational,
    from the global RNG, which the trainer seeds), denoises ``x_t`` pointwise given the latent and
    keeps the batch's mean KL in ``last_kl`` for :class:`_KLTrainer`. Shares the modules of the
    :class:`LatentDiffusion` it was built from."""

    def __init__(self, owner: "LatentDiffusion"):
        super().__init__()
        self.encoder, self.decoder = owner.encoder, owner.decoder
        self.variational, self.latent_dim = owner.variational, owner.latent_dim
        self.last_kl: Tensor | None = None

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor, *, cond_keep: Tensor | None = None) -> Tensor:
        x0 = cond.reshape(x_t.shape).to(x_t.dtype)
        out = self.encoder(x0)
        if self.variational:
            mean, logvar = out[:, :self.latent_dim], out[:, self.latent_dim:].clamp(*LOGVAR_RANGE)
            z = mean + (0.5 * logvar).exp() * torch.randn_like(mean)
            self.last_kl = _kl_standard_normal(mean.float(), logvar.float()).mean()
        else:
            z, self.last_kl = out, None
        return pointwise(self.decoder, x_t, t, z)


class _KLTrainer(Trainer):
    """The trainer with ``kl_weight * KL`` added to the denoising loss (stage 1)."""

    def __init__(self, *args, kl_weight: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.kl_weight = float(kl_weight)

    def _plain_loss(self, x0, t, noise, cond, keep, mask):
        loss = super()._plain_loss(x0, t, noise, cond, None, mask)  # cond holds sets, not labels
        kl = self.model.last_kl
        return loss if kl is None or self.kl_weight == 0 else loss + self.kl_weight * kl.to(loss.dtype)


def pointwise(net: nn.Module, x_t: Tensor, t: Tensor | float, z: Tensor) -> Tensor:
    """Apply a vector denoiser ``net(x (M, D), t (M,), cond (M, L))`` to every element of sets
    ``x_t`` (B, N, D) independently, each given its set's latent ``z`` (B, L): the elements are
    flattened into the batch (B N rows) with ``t`` and ``z`` repeated per element."""
    B, N, D = x_t.shape
    t = torch.as_tensor(t, device=x_t.device)
    t = t.expand(B) if t.ndim == 0 else t
    out = net(x_t.reshape(B * N, D), t.repeat_interleave(N), z.repeat_interleave(N, dim=0))
    return out.reshape(B, N, D)


class LatentDiffusion(nn.Module):
    """Latent diffusion for sets: encoder -> latent, pointwise decoder, diffusion prior.

    See the module's docstring for the method and the references.

    Parameters
    ----------
    dim : int; D, the width of one element (3 for points).
    latent_dim : int, default 128; the width of the set latent ``z``.
    hidden, depth : int, default 128, 3; the width and blocks of the default decoder and prior
        (:class:`anydiff.nn.ResidualMLP`) and the width of the default encoder.
    dropout : float, default 0.0; dropout inside the default decoder's and prior's blocks.
    num_classes : int, optional; a class-conditional prior (labels in [0, num_classes)).
    variational : bool, default True; the encoder outputs a Gaussian posterior and stage 1
        adds ``kl_weight`` times its KL divergence from N(0, I) (DPM's and LION's VAE), which
        keeps the latent space smooth: nearby latents decode to similar sets, so the prior's
        samples between training latents decode to plausible sets.
    kl_weight : float, default 1e-3; the KL weight (per set; the denoising loss is a mean over
        the set's coordinates).
    encoder : nn.Module, optional; ``(B, N, dim) -> (B, 2 latent_dim)`` when variational
        (mean, log-variance) else ``(B, latent_dim)``; it should be permutation-invariant.
        Default :class:`SetEncoder`.
    decoder : nn.Module, optional; ``decoder(x (M, dim), t (M,), cond (M, latent_dim))``.
        Default ``ResidualMLP(dim, hidden, depth, cond_dim=latent_dim)``.
    prior : nn.Module, optional; ``prior(z (B, latent_dim), t (B,), cond=labels or None,
        cond_keep=...)``. Default ``ResidualMLP(latent_dim, hidden, depth, num_classes=...)``.

    Attributes
    ----------
    latent_mean, latent_scale : buffers (latent_dim,); the standardization of the training
        latents the prior works in (set by :meth:`fit`).
    history_ : dict (after :meth:`fit`), the two trainers' loss histories.
    """

    def __init__(self, dim: int, latent_dim: int = 128, *, hidden: int = 128, depth: int = 3,
                 dropout: float = 0.0, num_classes: int | None = None, variational: bool = True,
                 kl_weight: float = 1e-3, encoder: nn.Module | None = None, decoder: nn.Module | None = None,
                 prior: nn.Module | None = None):
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        hidden = check_positive_int(hidden, "hidden")
        depth = check_positive_int(depth, "depth")
        if isinstance(kl_weight, bool) or not isinstance(kl_weight, Real) or not (0 <= kl_weight < np.inf):
            raise ValueError(f"kl_weight={kl_weight!r} must be a non-negative number")
        self.variational, self.kl_weight = bool(variational), float(kl_weight)
        self.num_classes = check_positive_int(num_classes, "num_classes", optional=True)
        self.encoder = encoder if encoder is not None else SetEncoder(
            self.dim, self.latent_dim, hidden, variational=self.variational)
        self.decoder = decoder if decoder is not None else ResidualMLP(
            self.dim, hidden=hidden, depth=depth, dropout=dropout, cond_dim=self.latent_dim)
        self.prior = prior if prior is not None else ResidualMLP(
            self.latent_dim, hidden=hidden, depth=depth, dropout=dropout, num_classes=self.num_classes)
        self.register_buffer("latent_mean", torch.zeros(self.latent_dim))
        self.register_buffer("latent_scale", torch.ones(self.latent_dim))

    # -- the pieces ------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        return self.latent_mean.device

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """The encoder's posterior of sets ``x`` (B, N, dim): mean (B, latent_dim) and log-variance
        (None when not variational)."""
        out = self.encoder(x)
        width = 2 * self.latent_dim if self.variational else self.latent_dim
        if not torch.is_tensor(out) or out.shape != (x.shape[0], width):
            got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"the encoder must return shape ({x.shape[0]}, {width}), got {got}")
        if not self.variational:
            return out, None
        return out[:, :self.latent_dim], out[:, self.latent_dim:].clamp(*LOGVAR_RANGE)

    @torch.no_grad()
    def encode(self, x: Tensor, *, generator: torch.Generator | None = None, sample: bool = False,
               chunk_size: int = 256) -> Tensor:
        """The latents of sets ``x`` (B, N, dim): the posterior means, or with ``sample=True``
        draws from the posterior (``generator`` for the noise); in chunks of ``chunk_size`` sets."""
        outs = []
        for lo in range(0, x.shape[0], chunk_size):
            mean, logvar = self.posterior(x[lo:lo + chunk_size])
            if sample and logvar is not None:
                noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
                mean = mean + (0.5 * logvar).exp() * noise
            outs.append(mean)
        return torch.cat(outs)

    def denoise(self, x_t: Tensor, t: Tensor | float, cond: Tensor) -> Tensor:
        """The decoder as a set denoiser ``(B, N, dim) -> (B, N, dim)`` given latents
        ``cond`` (B, latent_dim), element by element (:func:`pointwise`)."""
        return pointwise(self.decoder, x_t, t, cond)

    def forward(self, x_t: Tensor, t: Tensor | float, cond: Tensor) -> Tensor:
        """Same as :meth:`denoise`: the module is the decoder's set denoiser for the samplers."""
        return self.denoise(x_t, t, cond)

    # -- training ----------------------------------------------------------------------------------
    def fit(self, X, labels=None, *, schedule: Schedule, prediction: str = "v", steps: int = 2000,
            prior_steps: int | None = None, batch_size: int = 32, prior_batch_size: int | None = None,
            learning_rate: float = 1e-3, ema_decay: float = 0.999, label_dropout: float = 0.1,
            reference_batch: int = 0, device="auto", seed: int = 0, verbose: bool = False) -> "LatentDiffusion":
        """Train both stages on sets ``X`` (n, N, dim) with optional class ``labels`` (n,).

        Stage 1: encoder and decoder, ``steps`` steps of ``batch_size`` sets. Stage 2: the prior
        on the standardized posterior means, ``prior_steps`` (default ``steps``) steps of
        ``prior_batch_size`` (default ``batch_size``) latents, with ``label_dropout`` and
        ``reference_batch`` (the stable target field of the trainer) there. Each stage keeps its
        EMA weights. Returns self; ``history_`` holds the loss histories.
        """
        X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X).float()
        if X.ndim != 3 or X.shape[-1] != self.dim or X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"X must have shape (n_sets, n_elements, {self.dim}), got {tuple(X.shape)}")
        if labels is not None:
            if self.num_classes is None:
                raise ValueError("labels were given but the prior was built without num_classes")
            labels = torch.as_tensor(np.asarray(labels)).long()
        n = X.shape[0]
        steps = check_positive_int(steps, "steps")
        prior_steps = steps if prior_steps is None else check_positive_int(prior_steps, "prior_steps")
        batch_size = min(check_positive_int(batch_size, "batch_size"), n)
        prior_batch_size = min(batch_size if prior_batch_size is None
                               else check_positive_int(prior_batch_size, "prior_batch_size"), n)
        common = dict(prediction=prediction, learning_rate=learning_rate, ema_decay=ema_decay,
                      device=device, verbose=verbose)

        # stage 1: encoder + decoder; the clean sets travel in cond
        objective = _AutoencoderObjective(self)
        first = _KLTrainer(objective, schedule, kl_weight=self.kl_weight if self.variational else 0.0,
                           batch_size=batch_size, max_steps=steps, warmup_steps=max(1, min(100, steps // 10)),
                           label_dropout=0.0, seed=int(seed), log_every=min(100, steps), **common)
        first.fit(X, cond=X.reshape(n, -1))
        self.encoder.load_state_dict(first.ema_model.encoder.state_dict())
        self.decoder.load_state_dict(first.ema_model.decoder.state_dict())
        self.to(first.device)

        # stage 2: the prior on the standardized posterior means
        self.encoder.eval()
        Z = self.encode(X.to(first.device))
        mean, scale = Z.mean(0), Z.std(0, unbiased=False) if n > 1 else torch.ones_like(Z[0])
        self.latent_mean.copy_(mean)
        self.latent_scale.copy_(torch.where(scale > 1e-6, scale, torch.ones_like(scale)))
        second = Trainer(self.prior, schedule, batch_size=prior_batch_size, max_steps=prior_steps,
                         warmup_steps=max(1, min(100, prior_steps // 10)), label_dropout=label_dropout,
                         reference_batch=int(reference_batch), seed=int(seed) + 1,
                         log_every=min(100, prior_steps), **common)
        second.fit((Z - self.latent_mean) / self.latent_scale, cond=None if labels is None else labels)
        self.prior.load_state_dict(second.ema_model.state_dict())
        self.eval().requires_grad_(False)
        self.history_ = {"autoencoder": list(first.history), "prior": list(second.history)}
        return self

    # -- generation --------------------------------------------------------------------------------
    def sample_latents(self, n: int, *, schedule: Schedule, prediction: str = "v", labels: Tensor | None = None,
                       guidance_scale: float | None = None, generator: torch.Generator | None = None,
                       sampler: str = "dpmpp_2m_sde", steps: int = 50, timesteps="logsnr") -> Tensor:
        """``n`` latents (n, latent_dim) from the prior, in the encoder's units; ``labels``
        (n,) class codes, ``guidance_scale`` classifier-free guidance."""
        z = _sample(self.prior, (n, self.latent_dim), schedule=schedule, prediction=prediction, sampler=sampler,
                    steps=steps, generator=generator, cond=labels, guidance_scale=guidance_scale,
                    timesteps=timesteps, device=self._device())
        return z * self.latent_scale + self.latent_mean

    def decode(self, z: Tensor, n_elements: int, *, schedule: Schedule, prediction: str = "v",
               generator: torch.Generator | None = None, sampler: str = "dpmpp_2m_sde", steps: int = 50,
               timesteps="logsnr", clip_x0=None, chunk_size: int = 16) -> Tensor:
        """Sample ``n_elements`` elements per latent: (B, n_elements, dim), in chunks of
        ``chunk_size`` sets; ``clip_x0`` bounds the decoder's clean-element estimate."""
        n_elements = check_positive_int(n_elements, "n_elements")
        chunk_size = check_positive_int(chunk_size, "chunk_size")
        out = []
        for lo in range(0, z.shape[0], chunk_size):
            zc = z[lo:lo + chunk_size]
            out.append(_sample(self.denoise, (zc.shape[0], n_elements, self.dim), schedule=schedule,
                               prediction=prediction, sampler=sampler, steps=steps, generator=generator,
                               cond=zc, timesteps=timesteps, clip_x0=clip_x0, device=self._device()))
        return torch.cat(out)

    def sample(self, n: int, n_elements: int, *, schedule: Schedule, prediction: str = "v",
               labels: Tensor | None = None, guidance_scale: float | None = None,
               generator: torch.Generator | None = None, sampler: str = "dpmpp_2m_sde", steps: int = 50,
               timesteps="logsnr", clip_x0=None, chunk_size: int = 16) -> Tensor:
        """New sets (n, n_elements, dim): latents from the prior, then elements from the decoder."""
        if not isinstance(n, Integral) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n={n!r} must be a positive integer")
        kw = dict(schedule=schedule, prediction=prediction, generator=generator, sampler=sampler, steps=steps,
                  timesteps=timesteps)
        z = self.sample_latents(int(n), labels=labels, guidance_scale=guidance_scale, **kw)
        return self.decode(z, n_elements, clip_x0=clip_x0, chunk_size=chunk_size, **kw)
