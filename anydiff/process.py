"""The forward (noising) process of a variance-preserving schedule and its SDE.

``q(x_t | x0) = N(alpha_t x0, sigma_t^2 I)``; between two times s < t the process is Markov with
``q(x_t | x_s) = N(alpha_{t|s} x_s, sigma_{t|s}^2 I)``, ``alpha_{t|s} = alpha_t / alpha_s`` and
``sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2`` (Kingma et al. 2021, "Variational
diffusion models", eq. 2-4). The VP-SDE ``dx = -beta(t)/2 x dt + sqrt(beta(t)) dw`` has the same
marginals (Song et al. 2021, "Score-based generative modeling through SDEs", eq. 11).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._utils import append_dims, check_finite, check_time
from .schedules import Schedule

__all__ = ["q_sample", "q_step", "q_posterior", "sde_coefficients", "prior_log_prob", "randn_like"]


def randn_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise shaped like ``x`` in its dtype and on its device.

    The noise is drawn on the generator's own device (so a CPU generator drives CUDA sampling
    reproducibly) and moved to x's device.
    """
    gen_device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=gen_device, dtype=x.dtype).to(x.device)


def _per_sample_time(t: Tensor, x: Tensor, name: str = "t", check: bool = True) -> Tensor:
    """Broadcast a scalar or ``(B,)`` time to ``(B,)`` for data ``x`` of shape ``(B, *event)``."""
    t = check_time(t, name) if check else t
    if x.ndim < 1:
        raise ValueError("data must have a batch dimension: shape (B, *event_shape)")
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"{name} must have shape (B,) = ({x.shape[0]},) or be a scalar; got {tuple(t.shape)}")
    return t.to(x.device)


def q_sample(schedule: Schedule, x0: Tensor, t: Tensor, noise: Tensor | None = None,
             generator: torch.Generator | None = None, *, check: bool = True) -> Tensor:
    """Draw ``x_t = alpha_t x0 + sigma_t eps`` with ``eps ~ N(0, I)``.

    Parameters
    ----------
    x0 : Tensor, shape (B, *event_shape)
    t : Tensor, shape (B,) or scalar, in [0, 1]
    noise : Tensor shaped like x0, optional; drawn from ``generator`` when absent.
    check : validate the values of x0 and t (a read-back from the device); the training step
        skips it for data it validated once and times it drew itself (CUDA-graph capture).
    """
    if check:
        check_finite(x0, "x0")
    t = _per_sample_time(t, x0, check=check)
    if noise is None:
        noise = randn_like(x0, generator)
    elif noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
    alpha, sigma = schedule.coefficients(t, x0, check=check)
    return alpha * x0 + sigma * noise


def _transition(schedule: Schedule, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """``(alpha_{t|s}, sigma_{t|s}^2)`` of ``q(x_t | x_s)`` in float64, for s <= t."""
    alpha2_s, sigma2_s = schedule.alpha2_sigma2(s)
    alpha2_t, sigma2_t = schedule.alpha2_sigma2(t)
    ratio2 = torch.where(alpha2_s > 0, alpha2_t / alpha2_s, torch.zeros_like(alpha2_t))
    sigma2_ts = (sigma2_t - ratio2 * sigma2_s).clamp(min=0.0)
    return ratio2.sqrt(), sigma2_ts


def q_step(schedule: Schedule, x_s: Tensor, s: Tensor, t: Tensor,
           generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
    """Run the forward process from time ``s`` to a later time ``t``: ``x_t ~ q(x_t | x_s)``.

    Used for RePaint-style resampling and for testing that two short steps equal one long one.
    """
    s = _per_sample_time(s, x_s, "s")
    t = _per_sample_time(t, x_s, "t")
    if bool((s > t).any()):
        raise ValueError("q_step runs forward in time: need s <= t")
    alpha_ts, sigma2_ts = _transition(schedule, s, t)
    if noise is None:
        noise = randn_like(x_s, generator)
    n = x_s.ndim
    return (append_dims(alpha_ts, n).to(x_s.dtype) * x_s
            + append_dims(sigma2_ts.sqrt(), n).to(x_s.dtype) * noise)


def q_posterior(schedule: Schedule, x0: Tensor, x_t: Tensor, t: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of ``q(x_s | x_t, x0)`` for ``s < t`` (Ho et al. 2020, eq. 6-7, for
    any pair of times).

    ``mean = alpha_{t|s} sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_{t|s}^2 / sigma_t^2 x0``,
    ``var = sigma_{t|s}^2 sigma_s^2 / sigma_t^2``.

    Returns
    -------
    mean : Tensor shaped like x_t
    variance : Tensor, shape (B, 1, ..., 1), in x_t's dtype (broadcasts against x_t)
    """
    if x0.shape != x_t.shape:
        raise ValueError(f"x0 {tuple(x0.shape)} and x_t {tuple(x_t.shape)} must have the same shape")
    t = _per_sample_time(t, x_t, "t")
    s = _per_sample_time(s, x_t, "s_")
    if bool((s >= t).any()):
        raise ValueError("q_posterior needs s_ < t for every sample")
    alpha_ts, sigma2_ts = _transition(schedule, s, t)
    alpha2_s, sigma2_s = schedule.alpha2_sigma2(s)
    _, sigma2_t = schedule.alpha2_sigma2(t)
    coef_xt = alpha_ts * sigma2_s / sigma2_t
    coef_x0 = alpha2_s.sqrt() * sigma2_ts / sigma2_t
    var = sigma2_ts * sigma2_s / sigma2_t
    n, dt = x_t.ndim, x_t.dtype
    mean = append_dims(coef_xt, n).to(dt) * x_t + append_dims(coef_x0, n).to(dt) * x0
    return mean, append_dims(var, n).to(dt)


def sde_coefficients(schedule: Schedule, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Drift ``f(x, t) = -beta(t)/2 x`` and diffusion ``g(t) = sqrt(beta(t))`` of the VP-SDE.

    Returns
    -------
    drift : Tensor shaped like x
    g : Tensor, shape (B, 1, ..., 1), in x's dtype
    """
    t = _per_sample_time(t, x)
    beta = append_dims(schedule.beta(t), x.ndim)
    return (-0.5 * beta).to(x.dtype) * x, beta.sqrt().to(x.dtype)


def prior_log_prob(x: Tensor) -> Tensor:
    """Log-density of the prior ``N(0, I)`` at t=1, summed over the event dims: shape (B,)."""
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    d = flat.shape[1]
    return -0.5 * (flat**2).sum(1) - 0.5 * d * math.log(2 * math.pi)
