"""Pure conversions between the four things a denoiser can predict: eps, x0, v and score.

With ``x_t = alpha_t x0 + sigma_t eps`` (variance preserving, ``alpha_t^2 + sigma_t^2 = 1``):

* ``x0 = (x_t - sigma_t eps) / alpha_t``            (Ho et al. 2020, eq. 15)
* ``eps = (x_t - alpha_t x0) / sigma_t``
* ``v = alpha_t eps - sigma_t x0``                   (Salimans & Ho 2022, sec. 4)
* ``x0 = alpha_t x_t - sigma_t v``, ``eps = sigma_t x_t + alpha_t v``
* ``score = -eps / sigma_t``                          (Tweedie; Song et al. 2021, eq. 7)

Each formula is written once below as a named function of tensors; ``alpha`` and ``sigma`` are
already broadcast to the data. :func:`convert` looks up the pair. Divisions are only where the
formula needs them, so v and score stay finite at ``alpha_t = 0`` (zero terminal SNR).
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor

from ._utils import check_time

__all__ = ["PREDICTIONS", "check_prediction", "convert", "to_x0_eps", "from_x0_eps",
           "x0_from_eps", "eps_from_x0", "v_from_x0_eps", "x0_from_v", "eps_from_v",
           "score_from_eps", "eps_from_score", "x0_from_score"]

PREDICTIONS = ("eps", "x0", "v", "score")


def check_prediction(prediction: str, name: str = "prediction") -> str:
    if prediction not in PREDICTIONS:
        raise ValueError(f"{name}={prediction!r} is not a prediction type; use one of {PREDICTIONS}")
    return prediction


def x0_from_eps(eps: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return (x_t - sigma * eps) / alpha


def eps_from_x0(x0: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return (x_t - alpha * x0) / sigma


def v_from_x0_eps(x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return alpha * eps - sigma * x0


def x0_from_v(v: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return alpha * x_t - sigma * v


def eps_from_v(v: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return sigma * x_t + alpha * v


def score_from_eps(eps: Tensor, sigma: Tensor) -> Tensor:
    return -eps / sigma


def eps_from_score(score: Tensor, sigma: Tensor) -> Tensor:
    return -sigma * score


def x0_from_score(score: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    return (x_t + sigma**2 * score) / alpha


def to_x0_eps(pred: Tensor, source: str, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """``(x0, eps)`` implied by a prediction of kind ``source`` at ``x_t``."""
    if source == "eps":
        return x0_from_eps(pred, x_t, alpha, sigma), pred
    if source == "x0":
        return pred, eps_from_x0(pred, x_t, alpha, sigma)
    if source == "v":
        return x0_from_v(pred, x_t, alpha, sigma), eps_from_v(pred, x_t, alpha, sigma)
    check_prediction(source, "source")
    return x0_from_score(pred, x_t, alpha, sigma), eps_from_score(pred, sigma)


_FROM_X0_EPS: dict[str, Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]] = {
    "x0": lambda x0, eps, alpha, sigma: x0,
    "eps": lambda x0, eps, alpha, sigma: eps,
    "v": v_from_x0_eps,
    "score": lambda x0, eps, alpha, sigma: score_from_eps(eps, sigma),
}


def from_x0_eps(x0: Tensor, eps: Tensor, target: str, alpha: Tensor, sigma: Tensor) -> Tensor:
    """The prediction of kind ``target`` that corresponds to the pair ``(x0, eps)``."""
    return _FROM_X0_EPS[check_prediction(target, "target")](x0, eps, alpha, sigma)


def convert(pred: Tensor, source: str = "eps", target: str = "x0", *, x_t: Tensor, t: Tensor,
            schedule) -> Tensor:
    """Convert a denoiser output between parameterizations.

    Parameters
    ----------
    pred : Tensor, shape (B, *event_shape)
        The prediction, of kind ``source``.
    source, target : {"eps", "x0", "v", "score"}
    x_t : Tensor shaped like ``pred``, the noisy input the prediction was made at.
    t : Tensor, shape (B,) or scalar, times in [0, 1].
    schedule : anydiff.Schedule

    Returns
    -------
    Tensor shaped like ``pred``, of kind ``target``, in pred's dtype (coefficients in float64).
    """
    check_prediction(source, "source")
    check_prediction(target, "target")
    if pred.shape != x_t.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and x_t {tuple(x_t.shape)} must have the same shape")
    t = check_time(t)
    if t.ndim == 0:
        t = t.expand(x_t.shape[0])
    if t.shape != (x_t.shape[0],):
        raise ValueError(f"t must have shape ({x_t.shape[0]},) or be a scalar, got {tuple(t.shape)}")
    if source == target:
        return pred
    alpha, sigma = schedule.coefficients(t.to(x_t.device), pred)
    x0, eps = to_x0_eps(pred, source, x_t, alpha, sigma)
    return from_x0_eps(x0, eps, target, alpha, sigma)
