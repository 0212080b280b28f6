"""Denoising losses: training-time sampling, regression targets and loss weightings.

A denoiser of kind ``p`` in ``{"eps", "x0", "v", "score"}`` is trained by regressing its output
on the target built from the pair ``(x0, eps)`` that produced ``x_t = alpha_t x0 + sigma_t eps``
(Ho et al. 2020, eq. 14; Salimans & Ho 2022, sec. 4; Song et al. 2021, eq. 7).

Weightings are defined in x0-space (Hang et al. 2023, "Efficient diffusion training via Min-SNR
weighting strategy", sec. 3). At a fixed ``x_t`` each parameterization is an affine function of
x0, so an error ``d`` in the implied x0 is an error ``sqrt(c_p) d`` in the prediction, with
``SNR = alpha_t^2 / sigma_t^2``:

* x0:    ``c_x0 = 1``
* eps:   ``eps = (x_t - alpha x0) / sigma``    ->  ``c_eps = SNR``
* v:     ``v = alpha eps - sigma x0``          ->  ``d_v = -(alpha^2/sigma + sigma) d = -d / sigma``,
  ``c_v = 1 / sigma^2 = SNR + 1``
* score: ``score = -eps / sigma``              ->  ``c_score = SNR / sigma^2 = alpha^2 / sigma^4``

A weighting with x0-space weight ``W(SNR)`` multiplies the plain MSE of the network's own
parameterization by ``W / c_p``. The closed forms below are written in ``alpha_t^2, sigma_t^2``
so that no ``0/0`` or ``inf/inf`` appears for t in (0, 1], zero terminal SNR included.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from .parameterization import PREDICTIONS, check_prediction, from_x0_eps
from .process import randn_like
from .schedules import SNAP

__all__ = ["WEIGHTINGS", "TIME_SAMPLINGS", "REDUCTIONS", "sample_time", "loss_weight",
           "stable_target", "denoising_loss"]

WEIGHTINGS = ("uniform", "snr", "min_snr")
TIME_SAMPLINGS = ("uniform", "discrete")
REDUCTIONS = ("mean", "none")

_Factor = Callable[[Tensor, Tensor, float], Tensor]


def _one(a2: Tensor, s2: Tensor, gamma: float) -> Tensor:
    return torch.ones_like(a2)


# factor W / c_p of each (weighting, prediction), as a function of (alpha^2, sigma^2, gamma)
_FACTORS: dict[str, dict[str, _Factor]] = {
    # plain MSE of the network's own parameterization
    "uniform": {p: _one for p in PREDICTIONS},
    # W = SNR: the plain eps loss of Ho et al. (2020), expressed for every parameterization
    "snr": {
        "x0": lambda a2, s2, g: a2 / s2,            # SNR
        "eps": _one,                                # SNR / SNR
        "v": lambda a2, s2, g: a2,                  # SNR / (SNR + 1)
        "score": lambda a2, s2, g: s2,              # SNR / (SNR / sigma^2)
    },
    # W = min(SNR, gamma) (Hang et al. 2023, eq. 9 and the v form of sec. 3.4)
    "min_snr": {
        "x0": lambda a2, s2, g: torch.clamp(a2 / s2, max=g),             # min(SNR, gamma)
        "eps": lambda a2, s2, g: torch.clamp(g * s2 / a2, max=1.0),      # min(1, gamma / SNR)
        "v": lambda a2, s2, g: torch.minimum(a2, g * s2),                # min(SNR, gamma) sigma^2
        "score": lambda a2, s2, g: s2 * torch.clamp(g * s2 / a2, max=1.0),
    },
}


def _check_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use one of {choices}")
    return value


def _check_gamma(min_snr_gamma: float) -> float:
    if isinstance(min_snr_gamma, bool) or not isinstance(min_snr_gamma, (int, float)) \
            or not math.isfinite(min_snr_gamma) or min_snr_gamma <= 0:
        raise ValueError(f"min_snr_gamma={min_snr_gamma!r} must be a positive finite number (5.0 is usual)")
    return float(min_snr_gamma)


def sample_time(batch: int, *, schedule, time_sampling: str = "uniform",
                generator: torch.Generator | None = None,
                device: str | torch.device | None = None) -> Tensor:
    """Draw training times, one per sample.

    Parameters
    ----------
    batch : int
        Number of times B to draw (non-negative).
    schedule : anydiff.Schedule
        Gives the number of grid steps T for ``"discrete"``.
    time_sampling : {"uniform", "discrete"}
        ``"uniform"``: t ~ U(0, 1] (``t = 1 - u``, ``u ~ U[0, 1)``), floored at ``2e-9 / T``
        so that the schedule never snaps it to t = 0 (where sigma_t = 0).
        ``"discrete"``: ``t = k / T`` with k uniform in ``{1, ..., T}`` (Ho et al. 2020, Alg. 1).
    generator : torch.Generator, optional
        Source of randomness; the draw happens on its device.
    device : optional
        Device of the result; default the generator's device, else CPU.

    Returns
    -------
    Tensor, shape (B,), float64, values in (0, 1].
    """
    _check_choice(time_sampling, "time_sampling", TIME_SAMPLINGS)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise ValueError(f"batch={batch!r} must be a non-negative integer")
    if generator is not None:
        gen_device = generator.device
    else:  # the default generator of the target device (what a captured CUDA graph replays)
        gen_device = torch.device(device) if device is not None else torch.device("cpu")
    device = gen_device if device is None else torch.device(device)
    if time_sampling == "uniform":
        u = torch.rand(batch, generator=generator, device=gen_device, dtype=torch.float64)
        t = (1.0 - u).clamp(min=2 * SNAP / schedule.T)  # below that alpha_sigma treats t as 0
    else:
        k = torch.randint(1, schedule.T + 1, (batch,), generator=generator, device=gen_device)
        t = k.to(torch.float64) / schedule.T
    return t.to(device)


def loss_weight(t: Tensor, *, schedule, prediction: str, weighting: str = "uniform",
                min_snr_gamma: float = 5.0, check: bool = True) -> Tensor:
    """The factor that multiplies the plain per-sample MSE of a ``prediction``-type network.

    Parameters
    ----------
    t : Tensor, shape (B,), times in (0, 1]
    schedule : anydiff.Schedule
    prediction : {"eps", "x0", "v", "score"}
    weighting : {"uniform", "snr", "min_snr"}
        ``"uniform"``: factor 1, the plain MSE of the network's parameterization.
        ``"snr"``: x0-space weight SNR, i.e. the plain eps loss (factor ``SNR / c_p``).
        ``"min_snr"``: x0-space weight ``min(SNR, gamma)`` (Hang et al. 2023): eps ->
        ``min(1, gamma / SNR)``, x0 -> ``min(SNR, gamma)``, v -> ``min(SNR, gamma) / (SNR + 1)``,
        score -> ``sigma_t^2 min(1, gamma / SNR)``.
    min_snr_gamma : float
        The clamp gamma of ``"min_snr"`` (5 in the paper).

    Returns
    -------
    Tensor, shape (B,), float64, finite and non-negative for t in (0, 1] (``"snr"`` and
    ``"min_snr"`` with x0 are 0 where SNR = 0; ``"snr"`` with x0 is infinite at t = 0).
    """
    check_prediction(prediction)
    _check_choice(weighting, "weighting", WEIGHTINGS)
    gamma = _check_gamma(min_snr_gamma)
    alpha2, sigma2 = schedule.alpha2_sigma2(t, check=check)
    return _FACTORS[weighting][prediction](alpha2, sigma2, gamma)


def _check_t(t, batch: int, device: torch.device) -> Tensor:
    if not torch.is_tensor(t) or not t.is_floating_point():
        raise ValueError("t must be a float tensor of times in (0, 1], shape (B,) or a scalar")
    if t.ndim == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"t must have shape (B,) = ({batch},) or be a scalar, got {tuple(t.shape)}")
    return t.to(device)


def _check_mask(mask, x0: Tensor) -> Tensor | None:
    """The observed entries as a bool tensor shaped like x0 (None when everything is observed)."""
    if mask is None:
        return None
    if not torch.is_tensor(mask):
        raise ValueError(f"mask must be a tensor (1 = observed, 0 = missing), got {type(mask).__name__}")
    try:
        ok = torch.broadcast_shapes(mask.shape, x0.shape) == x0.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"mask of shape {tuple(mask.shape)} must have the shape of x0 "
                         f"{tuple(x0.shape)} or broadcast to it")
    observed = mask if mask.dtype == torch.bool else mask != 0
    return observed.to(x0.device).expand(x0.shape)


def stable_target(x0: Tensor, noise: Tensor, t: Tensor, reference: Tensor, *, schedule,
                  allowed: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Lower-variance regression targets: the stable target field (Xu et al. 2023,
    "Stable target field for reduced variance score estimation in diffusion models", eq. 6).

    The plain target regresses the network at ``x_t = alpha_t x0 + sigma_t eps`` on the one ``x0``
    that made it, whereas the optimum is the posterior mean ``E[x0 | x_t]``. At high noise many
    data points could have made ``x_t``, so the target is mostly noise and the network learns the
    high-noise denoiser, which decides how mass divides between modes, slowly. This replaces
    ``x0`` by the self-normalised posterior mean over ``{x0} + reference``,
    ``sum_j w_j r_j`` with ``w_j ~ N(x_t; alpha_t r_j, sigma_t^2 I)``, and ``eps`` by the noise that
    makes the same ``x_t`` from it. ``x_t`` is unchanged, so the loss and its weighting stay as
    they are. At low noise the weight sits on ``x0`` itself and the target is the plain one; as
    the reference grows, the target tends to the posterior mean under the data (a self-normalised
    estimate: biased for finite R, with a bias that vanishes as R grows).

    Parameters
    ----------
    x0, noise : Tensor, shape (B, *event_shape), float
    t : Tensor, shape (B,), times in (0, 1]
    reference : Tensor, shape (R, *event_shape): other rows of the data (a random batch).
    schedule : anydiff.Schedule
    allowed : Tensor, shape (B, R), bool, optional
        Which reference rows may explain each ``x_t`` (for class-conditional training: rows of
        the same class, or all rows where the label is dropped). Default: all of them.

    Returns
    -------
    (x0_bar, noise_bar) shaped like x0, with ``alpha_t x0_bar + sigma_t noise_bar = x_t``.
    """
    B, R = x0.shape[0], reference.shape[0]
    if reference.shape[1:] != x0.shape[1:]:
        raise ValueError(f"reference rows must have the event shape of x0 {tuple(x0.shape[1:])}, "
                         f"got {tuple(reference.shape[1:])}")
    if allowed is not None and allowed.shape != (B, R):
        raise ValueError(f"allowed must have shape (B, R) = ({B}, {R}), got {tuple(allowed.shape)}")
    alpha, sigma = schedule.coefficients(t, x0, check=False)
    a, s = alpha.reshape(B, 1).to(x0.dtype), sigma.reshape(B, 1).to(x0.dtype)
    x, e, r = x0.reshape(B, -1), noise.reshape(B, -1).to(x0.dtype), reference.reshape(R, -1).to(x0.dtype)
    # log N(x_t; alpha r, sigma^2 I) up to a per-row constant, with x_t = alpha x0 + sigma eps:
    # (alpha^2 / sigma^2) x0.r + (alpha / sigma) eps.r - (alpha^2 / (2 sigma^2)) |r|^2, one matmul
    c = a * a / (2 * s * s)
    u = torch.cat([2 * c * x + (a / s) * e, -c], dim=1)
    logits = u @ torch.cat([r, (r * r).sum(1, keepdim=True)], dim=1).T
    if allowed is not None:
        logits = logits.masked_fill(~allowed, -math.inf)
    own = c * (x * x).sum(1, keepdim=True) + (a / s) * (e * x).sum(1, keepdim=True)  # the same for x0
    w = torch.softmax(torch.cat([own, logits], dim=1), dim=1)[:, 1:]
    # x0_bar - x0 = sum_j w_j (r_j - x0): exactly 0 where the weight sits on x0
    delta = w @ r - w.sum(1, keepdim=True) * x
    return (x + delta).reshape(x0.shape), (e - a * delta / s).reshape(noise.shape)


def denoising_loss(model: Callable[..., Tensor], x0: Tensor, *, schedule, prediction: str = "eps",
                   weighting: str = "uniform", min_snr_gamma: float = 5.0,
                   mask: Tensor | None = None, t: Tensor | None = None, noise: Tensor | None = None,
                   generator: torch.Generator | None = None, time_sampling: str = "uniform",
                   cond=None, cond_keep: Tensor | None = None, reduction: str = "mean",
                   check: bool = True) -> Tensor:
    """Weighted denoising regression loss of ``model`` on a batch of clean data.

    Draws t (unless given, see :func:`sample_time`) and then the noise (unless given) from
    ``generator``, forms ``x_t = alpha_t x0 + sigma_t eps``, calls ``model(x_t, t, cond)`` and
    regresses it on the target of kind ``prediction``, weighted per sample by
    :func:`loss_weight`. No Python branch depends on tensor values here; the host reads that
    remain are the value checks of x0 and t, which ``check=False`` skips.

    Parameters
    ----------
    model : callable
        ``model(x_t, t, cond)`` (plus ``cond_keep=`` when that is given) -> Tensor shaped like
        x0. It receives t as float32, or float64 when x0 is float64.
    x0 : Tensor, shape (B, *event_shape), float
        Clean data. Entries where ``mask`` is 0 may hold anything (NaN included).
    schedule : anydiff.Schedule
    prediction : {"eps", "x0", "v", "score"}
        The parameterization of the model output.
    weighting : {"uniform", "snr", "min_snr"}, min_snr_gamma : float
        See :func:`loss_weight`.
    mask : Tensor, optional, shape of x0 or broadcastable to it
        Nonzero (or True) where x0 is observed. Missing entries are set to 0 before noising and
        add nothing to the loss. Each sample's loss is normalised by its own observed count,
        ``sum_i m_i w (out_i - target_i)^2 / sum_i m_i``; the mean is over samples with at least
        one observed entry (a sample with none has loss 0). An all-ones mask gives exactly the
        result of ``mask=None``.
    t : Tensor, shape (B,) or scalar, optional
        Times in (0, 1]; drawn with ``time_sampling`` when absent.
    noise : Tensor shaped like x0, optional
        The eps of the forward process; drawn from ``generator`` when absent.
    generator : torch.Generator, optional
    time_sampling : {"uniform", "discrete"}
    cond : optional
        Passed on to the model as its third argument.
    cond_keep : Tensor, optional
        Passed on as ``cond_keep=`` only when not None (e.g. classifier-free guidance dropout).
    reduction : {"mean", "none"}
        ``"mean"``: a scalar; ``"none"``: per-sample losses, shape (B,).
    check : bool
        Validate the values of x0 and t (reads them back from the device). The trainer turns it
        off: it validates the data once and draws t itself, and the step must not synchronise.

    Returns
    -------
    Tensor, scalar or shape (B,), float32 (float64 when x0 or the model output is float64).
    """
    check_prediction(prediction)
    _check_choice(weighting, "weighting", WEIGHTINGS)
    _check_choice(time_sampling, "time_sampling", TIME_SAMPLINGS)
    _check_choice(reduction, "reduction", REDUCTIONS)
    if not torch.is_tensor(x0) or not x0.is_floating_point() or x0.ndim < 1 or x0.shape[0] < 1:
        raise ValueError("x0 must be a float tensor of shape (B, *event_shape) with B >= 1")
    batch = x0.shape[0]
    observed = _check_mask(mask, x0)
    if noise is not None and (not torch.is_tensor(noise) or noise.shape != x0.shape):
        raise ValueError(f"noise must be a tensor of the shape of x0 {tuple(x0.shape)}")
    t = (sample_time(batch, schedule=schedule, time_sampling=time_sampling, generator=generator,
                     device=x0.device) if t is None else _check_t(t, batch, x0.device))
    noise = randn_like(x0, generator) if noise is None else noise.to(device=x0.device, dtype=x0.dtype)
    if observed is not None:
        x0 = torch.where(observed, x0, 0.0)  # where, not a product: NaN * 0 is NaN

    # forward process and the model's prediction
    x_t = schedule.q_sample(x0, t, noise, check=check)
    t_model = t.to(torch.float64 if x0.dtype == torch.float64 else torch.float32)
    out = model(x_t, t_model, cond) if cond_keep is None else model(x_t, t_model, cond, cond_keep=cond_keep)
    if not torch.is_tensor(out) or out.shape != x0.shape:
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"model must return a tensor shaped like x_t {tuple(x0.shape)}, got {shape}")

    # target of kind `prediction` and the weighted squared error per sample
    alpha, sigma = schedule.coefficients(t, x0, check=check)
    target = from_x0_eps(x0, noise, prediction, alpha, sigma)
    dtype = torch.promote_types(torch.promote_types(out.dtype, target.dtype), torch.float32)
    err2 = (out.to(dtype) - target.to(dtype)).square().reshape(batch, -1)
    if observed is None:
        sq_sum = err2.sum(1)
        count = torch.full((batch,), err2.shape[1], dtype=dtype, device=err2.device)
    else:
        obs = observed.reshape(batch, -1)
        sq_sum = torch.where(obs, err2, 0.0).sum(1)
        count = obs.sum(1).to(dtype)
    weight = loss_weight(t, schedule=schedule, prediction=prediction, weighting=weighting,
                         min_snr_gamma=min_snr_gamma, check=check).to(dtype)
    per_sample = weight * sq_sum / count.clamp(min=1.0)
    if reduction == "none":
        return per_sample
    has_data = (count > 0).to(dtype)
    return (per_sample * has_data).sum() / has_data.sum().clamp(min=1.0)
