"""Samplers for diffusion models of any event shape, behind one function, :func:`sample`.

Every sampler is a *step* with one shared signature, ``step(denoiser, x, t, t_next, state) -> x_next``,
that moves a batch ``x`` of shape ``(B, *event_shape)`` from per-sample times ``t`` to ``t_next``
(both ``(B,)`` float64). :func:`sample` owns the loop around the steps: the time grid, the starting
noise, classifier-free guidance (inside :class:`Denoiser`), inpainting by replacement and
RePaint resampling, trajectories and the progress bar. Coefficients are computed in float64 from
the schedule and cast to x's dtype only when they multiply data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ._utils import append_dims, check_finite, check_int
from .parameterization import check_prediction, eps_from_x0, to_x0_eps, x0_from_eps
from .process import q_posterior, q_sample, q_step, randn_like
from .schedules import Schedule
from .timesteps import SIGMA_TILDE_MAX, make_timesteps

__all__ = ["sample", "encode", "Denoiser", "SAMPLERS", "model_evaluations"]


def _c(coef: Tensor, x: Tensor) -> Tensor:
    """A float64 per-sample coefficient (B,) broadcast to x and cast to its dtype."""
    return append_dims(coef, x.ndim).to(x.dtype)


class Denoiser:
    """Turns ``model(x_t, t, cond)`` of any parameterization into ``(x0_hat, eps_hat)``.

    Classifier-free guidance (Ho & Salimans 2022) combines the conditional and unconditional
    outputs as ``out_uncond + w (out_cond - out_uncond)``; the four parameterizations are affine
    in one another at fixed ``x_t``, so combining the raw outputs is the same in any of them.
    ``clip_x0`` (None by default: non-image data have no natural range) clamps x0_hat: a number
    ``c`` to ``[-c, c]``, or a pair ``(low, high)`` of tensors that broadcast against the event
    shape (per-feature bounds, such as the range of the training data); see :func:`clip_bounds`.

    Guidance by an energy ``E(x0) -> (B,)`` (low where a sample satisfies a constraint) moves the
    estimate down E's gradient at every call, ``energy_scale`` the step size:

    - ``energy_gradient="x0"`` (default): ``x0' = x0_hat - s grad_x0 E(x0_hat)``, one gradient
      step on the clean estimate (the "backward" universal guidance of Bansal et al. 2023,
      reconstruction guidance on x0_hat); the network is not differentiated, so it costs one
      evaluation of E and its gradient.
    - ``energy_gradient="x_t"``: the score gets ``-s grad_{x_t} E(x0_hat(x_t))``, i.e.
      ``eps' = eps_hat + s sigma_t grad_{x_t} E`` (classifier guidance, Dhariwal & Nichol 2021,
      with E on the denoised estimate as in DPS, Chung et al. 2023): backpropagates through the
      network at every call.

    eps is then recomputed from ``x_t`` and the guided x0 (or x0 from the guided eps), so every
    sampler follows the guided estimate.
    """

    def __init__(self, model: Callable, schedule: Schedule, prediction: str = "eps", *, cond=None,
                 guidance_scale: float | None = None, clip_x0=None, energy: Callable | None = None,
                 energy_scale: float = 1.0, energy_gradient: str = "x0"):
        self.model, self.schedule = model, schedule
        self.prediction = check_prediction(prediction)
        self.cond, self.guidance_scale = cond, guidance_scale
        self.clip_x0 = None if clip_x0 is None else clip_bounds(clip_x0)
        if energy is not None and not callable(energy):
            raise ValueError(f"energy must be a callable E(x0) -> (B,) energies, got {type(energy).__name__}")
        if energy_gradient not in ("x0", "x_t"):
            raise ValueError(f"energy_gradient={energy_gradient!r} must be 'x0' or 'x_t'")
        if not math.isfinite(float(energy_scale)) or float(energy_scale) < 0:
            raise ValueError(f"energy_scale={energy_scale!r} must be a finite number >= 0")
        self.energy, self.energy_scale, self.energy_gradient = energy, float(energy_scale), energy_gradient
        self.evaluations = 0

    def _call(self, x: Tensor, t: Tensor, cond) -> Tensor:
        out = self.model(x, t, cond)
        self.evaluations += 1
        if not torch.is_tensor(out) or out.shape != x.shape:
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ValueError(f"model output has shape {shape}; it must be shaped like x_t {tuple(x.shape)}")
        return out

    def _estimate(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(x0_hat, eps_hat)`` from the model (with classifier-free guidance), no energy."""
        t_model = t.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
        out = self._call(x, t_model, self.cond)
        if self.guidance_scale is not None:
            uncond = self._call(x, t_model, None)
            out = uncond + self.guidance_scale * (out - uncond)
        alpha, sigma = self.schedule.alpha_sigma(t)
        return to_x0_eps(out, self.prediction, x, _c(alpha, x), _c(sigma, x))

    def _energy_grad(self, point: Tensor, energy_of: Tensor) -> Tensor:
        """The gradient of ``sum(E)`` with respect to ``point`` (which requires grad)."""
        energy = self.energy(energy_of)
        if not torch.is_tensor(energy) or energy.shape != point.shape[:1]:
            shape = tuple(energy.shape) if torch.is_tensor(energy) else type(energy).__name__
            raise ValueError(f"energy must return one value per sample, shape ({point.shape[0]},); got {shape}")
        if not energy.requires_grad:
            raise ValueError("energy's output does not depend differentiably on x0: write it with torch "
                             "operations on the tensor it is given (no .numpy(), .item() or .detach())")
        check_finite(energy.detach(), "energy(x0)")
        (grad,) = torch.autograd.grad(energy.sum(), point, allow_unused=True)
        return torch.zeros_like(point) if grad is None else torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)

    def __call__(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        alpha, sigma = self.schedule.alpha_sigma(t)
        if self.energy is None or self.energy_scale == 0:
            x0, eps = self._estimate(x, t)
        elif self.energy_gradient == "x0":  # a gradient step on the clean estimate
            x0, eps = self._estimate(x, t)
            with torch.enable_grad():
                x0_req = x0.detach().requires_grad_(True)
                x0 = x0 - self.energy_scale * self._energy_grad(x0_req, x0_req)
            eps = torch.where(_c(sigma, x) > 0, eps_from_x0(x0, x, _c(alpha, x), _c(sigma, x)), eps)
        else:  # the score gets -s grad_{x_t} E(x0_hat(x_t))
            with torch.enable_grad():
                x_req = x.detach().requires_grad_(True)
                x0, eps = self._estimate(x_req, t)
                grad = self._energy_grad(x_req, x0)
            eps = eps.detach() + self.energy_scale * _c(sigma, x) * grad
            x0 = torch.where(_c(alpha, x) > 0, x0_from_eps(eps, x, _c(alpha.clamp_min(1e-30), x), _c(sigma, x)),
                             x0.detach())
        if self.clip_x0 is not None:
            low, high = (b.to(x.device, x.dtype) for b in self.clip_x0)
            x0 = torch.clamp(x0, low, high)
            eps = torch.where(_c(sigma, x) > 0, eps_from_x0(x0, x, _c(alpha, x), _c(sigma, x)), eps)
        return x0, eps


@dataclass
class StepState:
    """What a step may read besides the batch: the schedule, randomness and options, and a
    scratch ``history`` for multistep methods (snapshotted and restored around RePaint repeats)."""

    schedule: Schedule
    generator: torch.Generator | None = None
    eta: float = 0.0
    corrector_steps: int = 1
    snr: float = 0.16
    history: dict = field(default_factory=dict)
    step_index: int = 0            # the step being taken, 0-based (set by :func:`sample`)
    n_steps: int | None = None     # the steps of the grid; None when the caller does not say
    resample_round: int = 0        # RePaint: r > 0 on the r-th repeat of a step, x re-noised from t_next

    @property
    def steps_left(self) -> int | None:
        """The steps still to take, this one included (None when ``n_steps`` is unknown)."""
        return None if self.n_steps is None else self.n_steps - self.step_index


# --------------------------------------------------------------------------------------------
# The steps. Each: step(den, x, t, t_next, state) -> x_next, t and t_next of shape (B,).
# --------------------------------------------------------------------------------------------

def _posterior_sample(den, x, x0, t, t_next, state):
    """Draw from q(x_{t_next} | x_t, x0_hat): the ancestral step of Ho et al. (2020), Alg. 2."""
    mean, var = q_posterior(state.schedule, x0, x, t, t_next)
    return mean + var.sqrt() * randn_like(x, state.generator)


def ddpm(den, x, t, t_next, state):
    """Ancestral sampling with the posterior variance (Ho et al. 2020). With fewer steps than T
    it samples the posterior of the strided chain between consecutive grid times."""
    x0, _ = den(x, t)
    return _posterior_sample(den, x, x0, t, t_next, state)


def ddim(den, x, t, t_next, state):
    """DDIM (Song, Meng & Ermon 2021, eq. 12) on any pair of times.

    ``x' = alpha' x0 + sqrt(sigma'^2 - s^2) eps + s z`` with ``s = eta * sqrt(posterior variance)``:
    eta = 0 is deterministic, eta = 1 samples the DDPM posterior.
    """
    x0, eps = den(x, t)
    alpha_n, sigma_n = state.schedule.alpha_sigma(t_next)
    x_next = _c(alpha_n, x) * x0
    if state.eta == 0:
        return x_next + _c(sigma_n, x) * eps
    _, var = q_posterior(state.schedule, x0, x, t, t_next)
    s2 = state.eta**2 * var.reshape(x.shape[0]).to(torch.float64)
    direction = (sigma_n**2 - s2).clamp(min=0).sqrt()
    return x_next + _c(direction, x) * eps + _c(s2.sqrt(), x) * randn_like(x, state.generator)


def euler(den, x, t, t_next, state):
    """Euler on the probability-flow ODE in ``sigma~ = sigma/alpha`` (Karras et al. 2022, Alg. 1):
    ``x~' = x~ + (sigma~' - sigma~) eps`` with ``x~ = x/alpha``. Multiplied out in VP coordinates
    this is ``x' = alpha' x0 + sigma' eps``, DDIM with eta = 0 (Karras et al. 2022, sec. 4), which
    also stays finite from ``alpha = 0``; the tests check the identity."""
    x0, eps = den(x, t)
    alpha_n, sigma_n = state.schedule.alpha_sigma(t_next)
    return _c(alpha_n, x) * x0 + _c(sigma_n, x) * eps


def heun(den, x, t, t_next, state):
    """Heun's second-order method on the same ODE (Karras et al. 2022, Alg. 2, no churn).

    Predictor: the Euler step. Corrector: ``x~' = x~ + (sigma~' - sigma~)(eps + eps')/2``, i.e.
    ``x' = x_euler + (sigma' - alpha' sigma/alpha)(eps' - eps)/2``. As in Karras' algorithm the step
    to ``t' = 0`` stays Euler. So does a step that starts above Karras' ``sigma~_max = 80``: there
    eps is almost exactly ``x~/sigma~`` (Euler is nearly exact), while the trapezoid rule over a
    step from, say, sigma~ = 2e4 (t=1 of a cosine schedule) to 80 weighs the far end far too much
    and diverges.
    """
    x0, eps = den(x, t)
    sched = state.schedule
    alpha, sigma = sched.alpha_sigma(t)
    alpha_n, sigma_n = sched.alpha_sigma(t_next)
    x_euler = _c(alpha_n, x) * x0 + _c(sigma_n, x) * eps
    correct = (t_next > 0) & (sigma <= SIGMA_TILDE_MAX * alpha)
    if not bool(correct.any()):
        return x_euler
    _, eps_n = den(x_euler, torch.where(correct, t_next, t))
    gain = torch.where(correct, sigma_n - alpha_n * sigma / alpha.clamp(min=1e-300), torch.zeros_like(alpha))
    return x_euler + _c(gain, x) * torch.where(_c(correct, x) > 0, eps_n - eps, torch.zeros_like(eps)) / 2


def _dpmpp_terms(den, x, t, t_next, state, key: str):
    """What both DPM-Solver++(2M) steps need: ``(D, h, alpha', sigma', sigma)`` with
    ``h = lambda' - lambda`` (``lambda = log(alpha/sigma)``) and D the second-order data estimate,
    x0_hat on the first step, then ``x0_hat + (h / h_prev)(x0_hat - x0_prev) / 2 =
    (1 + 1/(2r)) x0_hat - 1/(2r) x0_prev`` with ``r = h_prev / h`` (x0_hat itself where h or h_prev
    is infinite: the step from zero terminal SNR and the step to t = 0 stay first order). Records
    ``(x0_hat, h)`` under ``key`` in the step history for the next step."""
    x0, _ = den(x, t)
    sched = state.schedule
    alpha_n, sigma_n = sched.alpha_sigma(t_next)
    _, sigma = sched.alpha_sigma(t)
    h = 0.5 * (sched.log_snr(t_next) - sched.log_snr(t))
    prev = state.history.get(key)
    state.history[key] = (x0, h)
    D = x0
    if prev is not None:
        x0_prev, h_prev = prev
        second = torch.isfinite(h) & torch.isfinite(h_prev)
        half_ratio = torch.where(second, h / (2 * h_prev), torch.zeros_like(h))
        D = x0 + _c(half_ratio, x0) * (x0 - x0_prev)
    return D, h, alpha_n, sigma_n, sigma


def dpmpp_2m(den, x, t, t_next, state):
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Alg. 2), multistep, data prediction.

    With ``lambda = log(alpha/sigma)`` and ``h = lambda' - lambda``:
    ``x' = (sigma'/sigma) x + alpha' (1 - e^{-h}) D``, where D is x0_hat on the first step and
    ``(1 + 1/(2r)) x0_hat - 1/(2r) x0_prev``, ``r = h_prev / h``, after. The step to t' = 0 and a
    step from zero terminal SNR (infinite h) are first order.
    """
    D, h, alpha_n, sigma_n, sigma = _dpmpp_terms(den, x, t, t_next, state, "dpmpp_2m")
    return _c(sigma_n / sigma, x) * x + _c(alpha_n * -torch.expm1(-h), x) * D


# -- higher-order multistep solvers -------------------------------------------------------------
# Both solve the probability-flow ODE exactly up to the data prediction (Lu et al. 2022,
# "DPM-Solver++", eq. 9): with lambda = log(alpha/sigma) and h = lambda' - lambda,
#     x' = (sigma'/sigma) x + alpha' int_0^h e^{-(h-u)} x0(lambda + u) du,
# and replace x0(lambda + u) by a polynomial through the latest data predictions.

_LOWER_ORDER_FINAL_BELOW = 15  # with fewer grid steps the last steps drop order (see _step_order)


def _exp_moments(h: Tensor, K: int) -> Tensor:
    """``beta_k(h) = (k! / h^k) g_{k+1}(h)`` for k = 1..K, shape ``(B, K)``, for finite h > 0, where
    ``g_{k+1}(h) = int_0^h e^{-(h-u)} u^k / k! du`` (so ``g_1 = 1 - e^{-h}``, ``g_{k+1} = h^k/k! - g_k``).

    ``beta_k = 1 - k beta_{k-1} / h`` (``beta_0 = g_1``) cancels badly for small h; there the series
    ``beta_k = k! h sum_j (-h)^j / (k+1+j)!`` is used instead (``beta_k ~ h / (k+1)``)."""
    small = h < 1
    hs = torch.where(small, h, torch.zeros_like(h))
    hl = torch.where(small, torch.ones_like(h), h)
    J = 20  # h < 1: the terms fall below 1/21! of the first
    coef = torch.tensor([[math.factorial(k) / math.factorial(k + 1 + j) for k in range(1, K + 1)] for j in range(J)],
                        dtype=torch.float64, device=h.device)
    series = hs[:, None] * ((-hs)[:, None] ** torch.arange(J, dtype=torch.float64, device=h.device) @ coef)
    out, recursion = [], -torch.expm1(-hl)
    for k in range(1, K + 1):
        recursion = 1 - k * recursion / hl
        out.append(recursion)
    return torch.where(small[:, None], series, torch.stack(out, -1))


def _weights(h: Tensor, R: Tensor) -> Tensor:
    """The weights of :func:`_high_order_sum` for steps h (B,) and points rho = R (B, K)."""
    K = R.shape[1]
    if K == 1:
        return -torch.expm1(-h)[:, None] / (2 * R)
    powers = torch.arange(1, K + 1, dtype=torch.float64, device=h.device)
    return torch.linalg.solve(R[:, None, :] ** powers[:, None], _exp_moments(h, K))


def _high_order_sum(x: Tensor, h: Tensor, rhos: list[Tensor], diffs: list[Tensor], K: Tensor) -> Tensor:
    """``sum_j w_j D_j`` over the first ``K`` points of each sample (K of shape (B,), 0 = none):
    the part of ``int_0^h e^{-(h-u)} x0(lambda + u) du`` beyond ``g_1 x0_hat`` (see above).

    Point j lies at ``lambda + rho_j h`` with data prediction ``x0_hat + D_j``. With K >= 2 the
    weights solve ``sum_j w_j rho_j^k = beta_k(h)``, k = 1..K: the polynomial through the K + 1
    points integrated exactly (UniPC's ``R_p a_p = phi_p / B(h)`` times ``B(h)``, which cancels).
    With one point ``w = (1 - e^{-h}) / (2 rho)``: UniPC's ``a_1 = 1/2`` with ``B(h) = e^h - 1``
    (bh2, data prediction), which for a previous point is DPM-Solver++(2M)'s term.
    """
    out = torch.zeros_like(x)
    for k in range(1, len(rhos) + 1):
        use = K == k
        if not bool(use.any()):
            continue
        hk = torch.where(use, h, torch.ones_like(h))  # samples without this order get harmless values
        R = torch.stack([torch.where(use, r, torch.full_like(r, j + 2.0)) for j, r in enumerate(rhos[:k])], -1)
        if bool((hk == hk[0]).all() and (R == R[0]).all()):  # one grid for the batch: solve once
            w = _weights(hk[:1], R[:1]).expand(R.shape[0], k)
        else:
            w = _weights(hk, R)
        w = torch.where(use[:, None], w, torch.zeros_like(w))
        for j in range(k):
            out = out + _c(w[:, j], x) * diffs[j]
    return out


def _step_order(state: StepState, stored: int, order: int) -> int:
    """The order of this step for the whole batch: warm-up (at most one more than the stored data
    predictions) and, on grids of fewer than 15 steps, at most the steps left, so the last step
    is first order and the one before second order (``lower_order_final`` of Lu et al.'s code)."""
    q = min(order, stored + 1)
    if state.n_steps is not None and state.n_steps < _LOWER_ORDER_FINAL_BELOW:
        q = min(q, state.steps_left)
    return max(q, 1)


def _usable_points(lam: Tensor, h: Tensor, lams: list[Tensor], q: int) -> Tensor:
    """How many of the stored points (most recent first) each sample uses, (B,) long: up to
    ``q - 1``, none where h is infinite, and none at or behind an infinite lambda (the start
    of a zero-terminal-SNR grid): those steps stay first order, as in :func:`_dpmpp_terms`."""
    ok = torch.isfinite(h) & torch.isfinite(lam)
    K = torch.zeros(h.shape, dtype=torch.long, device=h.device)
    for lam_j in lams[: q - 1]:
        ok = ok & torch.isfinite(lam_j)
        K = K + ok.long()
    return K


def _stored(state: StepState, key: str, empty):
    """The step history under ``key``; ``empty`` on a RePaint repeat. There x was re-noised from
    t_next, so it no longer lies on the path the stored data predictions describe, and
    extrapolating from them amplifies the mismatch at every repeat (with 10 repeats the samples
    diverged): repeats restart the multistep method, and the next step resumes from the last."""
    return empty if state.resample_round > 0 else state.history.get(key, empty)


def _lambda_step(state: StepState, t: Tensor, t_next: Tensor):
    sched = state.schedule
    alpha, sigma = sched.alpha_sigma(t)
    alpha_n, sigma_n = sched.alpha_sigma(t_next)
    lam, lam_n = 0.5 * sched.log_snr(t), 0.5 * sched.log_snr(t_next)
    return alpha, sigma, alpha_n, sigma_n, lam, lam_n - lam


def _predict(x, x0, stored, lam, h, q):
    """The multistep term of a step of order q from the stored points ``((x0_j, lambda_j), ...)``."""
    K = _usable_points(lam, h, [lam_j for _, lam_j in stored], q)
    rhos = [(lam_j - lam) / h for _, lam_j in stored[: q - 1]]
    diffs = [x0_j - x0 for x0_j, _ in stored[: q - 1]]
    return _high_order_sum(x, h, rhos, diffs, K), K


def dpmpp_3m(den, x, t, t_next, state):
    """DPM-Solver++(3M) (Lu et al. 2022, "DPM-Solver++", sec. 4; the third-order multistep solver
    of their code), data prediction.

    The last three data predictions ``m0, m1, m2`` at ``lambda, lambda - h0, lambda - h0 - h1``
    define the quadratic ``x0(lambda + u) = m0 + u d1 + u^2 d2`` with ``f01 = (m0 - m1)/h0``,
    ``f12 = (m1 - m2)/h1``, ``d2 = (f01 - f12)/(h0 + h1)``, ``d1 = f01 + h0 d2``; integrated exactly,
    ``x' = (sigma'/sigma) x + alpha' (g1 m0 + g2 d1 + 2 g3 d2)``, ``g1 = 1 - e^{-h}``,
    ``g2 = h - g1``, ``g3 = h^2/2 - g2``. The first step is first order (DDIM), the second is
    :func:`dpmpp_2m`'s; on grids of fewer than 15 steps the last two steps are second and first
    order (``lower_order_final``). Steps with infinite h (from zero terminal SNR; to t' = 0) are
    first order, no step uses a point at lambda = -inf, and RePaint repeats restart the method.

    The reference code weighs d2 by ``g3`` instead of ``2 g3`` (its ``D2 = h^2 d2`` estimates
    ``h^2 x0''/2``); that leaves an ``h^3 x0''/12`` error per step, i.e. a second-order method.
    The exact integral here is third order (the tests measure it against the closed-form flow of
    Gaussian data).
    """
    x0, _ = den(x, t)
    _, sigma, alpha_n, sigma_n, lam, h = _lambda_step(state, t, t_next)
    stored = _stored(state, "dpmpp_3m", ())
    extra, _ = _predict(x, x0, stored, lam, h, _step_order(state, len(stored), 3))
    state.history["dpmpp_3m"] = ((x0, lam),) + stored[:1]  # a new tuple: RePaint snapshots stay intact
    return _c(sigma_n / sigma, x) * x + _c(alpha_n * -torch.expm1(-h), x) * x0 + _c(alpha_n, x) * extra


def unipc(den, x, t, t_next, state):
    """UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
    of Diffusion Models", Alg. 2/3, data prediction, B(h) = e^h - 1 ("bh2"), order 3).

    UniP-p, the predictor: ``x' = (sigma'/sigma) x + alpha' (g1 m0 + B~(h) sum_m a_m D_m / r_m)``
    with ``g1 = B~(h) = 1 - e^{-h}`` (B(h) in the data-prediction form, h -> -h), ``D_m = m_m - m0``
    the differences to the p - 1 previous data predictions at ``lambda + r_m h`` (r_m < 0), and
    ``a`` solving ``sum_m a_m r_m^{k-1} = k! g_{k+1}(h) / (h^k B~(h))``, k = 1..p-1
    (``g_{k+1} = int_0^h e^{-(h-u)} u^k/k! du``); with one difference ``a_1 = 1/2``, which makes
    UniP-2 exactly :func:`dpmpp_2m` and UniP-3 :func:`dpmpp_3m`. UniC-p, the corrector: the same
    formula from the same start with the new data prediction ``m'`` at ``r = 1`` added to the
    differences (p of them, order p + 1; ``a_1 = 1/2`` again with one). The corrector needs
    ``m' = x0_hat(x', t')``, which the next step evaluates anyway: each step first corrects its
    input x by ``alpha (C - P)`` (P the predictor's term, C the corrector's), then predicts from
    the corrected x with the same m' -- one model call per step, and the last step is not
    corrected. Adding the correction to the x it is given keeps inpainting's replacement.
    The order is 1, 2, then 3 (warm-up); on grids of fewer than 15 steps the last two steps
    predict with orders 2 and 1. Steps with infinite h (from zero terminal SNR; to t' = 0) are
    first order and are not corrected, no step uses a point at lambda = -inf, and RePaint
    repeats restart the method (no correction, first order).
    """
    x0, _ = den(x, t)
    alpha, sigma, alpha_n, sigma_n, lam, h = _lambda_step(state, t, t_next)
    stored, pending = _stored(state, "unipc", ((), None))
    if pending is not None:  # UniC on the step that led here, with the new x0_hat
        P, K_c = pending
        x0_p, lam_p = stored[0]
        h_c = lam - lam_p
        rhos = [torch.ones_like(h_c)] + [(lam_j - lam_p) / h_c for _, lam_j in stored[1:]]
        diffs = [x0 - x0_p] + [x0_j - x0_p for x0_j, _ in stored[1:]]
        x = x + _c(alpha, x) * (_high_order_sum(x, h_c, rhos, diffs, K_c) - P)
    extra, K = _predict(x, x0, stored, lam, h, _step_order(state, len(stored), 3))
    K_c = torch.where(torch.isfinite(h), K + 1, torch.zeros_like(K))  # the corrector adds x0_hat(x')
    state.history["unipc"] = (((x0, lam),) + stored[:2], (extra, K_c))
    return _c(sigma_n / sigma, x) * x + _c(alpha_n * -torch.expm1(-h), x) * x0 + _c(alpha_n, x) * extra

def dpmpp_2m_sde(den, x, t, t_next, state):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", app. B), a second-order multistep
    solver of the reverse SDE, data prediction.

    The reverse VP-SDE is linear in x given x0_hat(lambda), so a step solves it exactly up to the
    integral of x0_hat: ``x' = (sigma'/sigma) e^{-h} x + alpha' (1 - e^{-2h}) D +
    sigma' sqrt(1 - e^{-2h}) z``, with D as in :func:`dpmpp_2m`: x0_hat on the first step, the
    step to t' = 0 and a step from zero terminal SNR (there this is the DDPM posterior step), the
    midpoint extrapolation in lambda after. Like DDPM, and unlike the ODE solvers, the injected
    noise corrects the errors a learned model accumulates (Karras et al. 2022, sec. 4); the
    second-order term lets it do so in far fewer steps. (The exact integral of the linear
    extrapolant weighs the far end of a long step, where the extrapolation is worst, and was less
    accurate with the exact mixture denoiser on coarse log-SNR grids.)
    """
    D, h, alpha_n, sigma_n, sigma = _dpmpp_terms(den, x, t, t_next, state, "dpmpp_2m_sde")
    phi = -torch.expm1(-2 * h)  # 1 - e^{-2h}: 1 on the step to t' = 0
    return (_c(sigma_n / sigma * torch.exp(-h), x) * x + _c(alpha_n * phi, x) * D
            + _c(sigma_n * phi.sqrt(), x) * randn_like(x, state.generator))


def euler_maruyama(den, x, t, t_next, state):
    """Euler-Maruyama on the reverse VP-SDE (Song et al. 2021, eq. 6):
    ``x' = x + (beta/2 x + beta score) dt + sqrt(beta dt) z``, ``dt = t - t'``.

    The step to t' = 0 returns the denoised mean x0_hat (Song et al.'s noise removal). On a step
    from alpha = 0 (zero terminal SNR, where beta is infinite) it takes the exact posterior step.
    """
    x0, eps = den(x, t)
    sched = state.schedule
    _, sigma = sched.alpha_sigma(t)
    beta = sched.beta(t)
    dt = t - t_next
    score = -eps / _c(sigma, x)
    z = randn_like(x, state.generator)
    x_em = x + _c(0.5 * beta * dt, x) * x + _c(beta * dt, x) * score + _c((beta * dt).sqrt(), x) * z
    if not bool(torch.isfinite(beta).all()):
        x_em = torch.where(_c(torch.isfinite(beta), x) > 0, x_em,
                           _posterior_sample(den, x, x0, t, t_next, state))
    return torch.where(_c(t_next == 0, x) > 0, x0, x_em)


def _langevin_corrector(den, x, t, state):
    """``corrector_steps`` steps of unadjusted Langevin dynamics at noise level t,
    ``x <- x + e score + sqrt(2 e) z``, with step ``e = 2 (snr sigma_t)^2``.

    This is the step size of Song et al. (2021, Alg. 5), ``2 (snr ||z|| / ||score||)^2``, with the
    norms replaced by their expectations ``||z||^2 = D`` and ``||score||^2 = D / sigma_t^2``:
    per-sample norms are heavy-tailed in low dimension (a 2-D sample near a mode has a tiny
    score and would get a huge step), and the batch means of the original couple the samples.
    It is also the ``e ~ sigma^2`` annealing of Song & Ermon (2019).
    """
    _, sigma = state.schedule.alpha_sigma(t)
    step = 2 * (state.snr * sigma) ** 2
    for _ in range(state.corrector_steps):
        _, eps = den(x, t)
        score = -eps / _c(sigma, x)
        x = x + _c(step, x) * score + _c((2 * step).sqrt(), x) * randn_like(x, state.generator)
    return x


def _then_correct(den, x_pred, x0, t_next, state):
    """Run the Langevin corrector at t_next where t_next > 0; the step to 0 returns x0_hat."""
    final = t_next == 0
    if bool(final.all()):
        return x0
    x_corr = _langevin_corrector(den, x_pred, torch.where(final, torch.ones_like(t_next), t_next), state)
    return torch.where(_c(final, x0) > 0, x0, x_corr)


def langevin(den, x, t, t_next, state):
    """Annealed Langevin dynamics (Song & Ermon 2019) on the learned score: ``corrector_steps``
    Langevin steps at each noise level t' of the grid; the step to t' = 0 returns x0_hat."""
    final = t_next == 0
    x0 = den(x, t)[0] if bool(final.any()) else x
    return _then_correct(den, x, x0, t_next, state)


def pc(den, x, t, t_next, state):
    """Predictor-corrector (Song et al. 2021, Alg. 2 and 5): an ancestral predictor step to t',
    then ``corrector_steps`` Langevin steps at t'."""
    x0, _ = den(x, t)
    x_pred = _posterior_sample(den, x, x0, t, t_next, state)
    return _then_correct(den, x_pred, x0, t_next, state)


SAMPLERS: dict[str, Callable] = {
    "ddpm": ddpm, "ddim": ddim, "euler": euler, "heun": heun, "dpmpp_2m": dpmpp_2m,
    "dpmpp_3m": dpmpp_3m, "unipc": unipc, "dpmpp_2m_sde": dpmpp_2m_sde, "euler_maruyama": euler_maruyama, "langevin": langevin, "pc": pc,
}
_DETERMINISTIC = ("ddim", "euler", "heun")  # the samplers that may also run forward in time


def model_evaluations(sampler: str, steps: int, *, schedule: Schedule, timesteps: str | Tensor = "trailing",
                      corrector_steps: int = 1, guidance: bool = False) -> int:
    """The number of model calls :func:`sample` makes with these settings (twice as many with
    classifier-free guidance): one per step, plus Heun's corrections (every step that ends above
    t=0 and starts at sigma~ <= 80) and the Langevin steps of ``langevin`` / ``pc`` at each t' > 0."""
    _check_sampler(sampler)
    ts = make_timesteps(schedule, steps if isinstance(timesteps, str) else None, timesteps)[:, 0]
    t, t_next = ts[:-1], ts[1:]
    inner = int((t_next > 0).sum())
    if sampler == "heun":
        alpha, sigma = schedule.alpha_sigma(t)
        n = len(t) + int(((t_next > 0) & (sigma <= SIGMA_TILDE_MAX * alpha)).sum())
    elif sampler == "langevin":
        n = corrector_steps * inner + (len(t) - inner)
    elif sampler == "pc":
        n = len(t) + corrector_steps * inner
    else:
        n = len(t)
    return n * (2 if guidance else 1)


def _check_sampler(sampler: str) -> str:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler={sampler!r} is unknown; use one of {sorted(SAMPLERS)}")
    return sampler


def _check_inpainting(known, mask, shape, device, dtype):
    if (known is None) != (mask is None):
        raise ValueError("known and mask go together: pass both (mask is 1 where known) or neither")
    if known is None:
        return None, None
    if not torch.is_tensor(known) or tuple(known.shape) != tuple(shape):
        got = tuple(known.shape) if torch.is_tensor(known) else type(known).__name__
        raise ValueError(f"known must be a tensor of shape {tuple(shape)} (the sample shape), got {got}")
    mask = torch.as_tensor(mask, device=device)
    try:
        mask = torch.broadcast_to(mask, shape)
    except RuntimeError as exc:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the sample shape "
                         f"{tuple(shape)}") from exc
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold only 0 and 1 (1 where known)")
    mask = mask.to(dtype)
    known = known.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(known[mask > 0]).all()):
        raise ValueError("known has NaN or infinite values where mask == 1")
    return torch.where(mask > 0, known, torch.zeros_like(known)), mask


def clip_bounds(clip_x0, event_shape: tuple[int, ...] | None = None) -> tuple[Tensor, Tensor]:
    """Validate ``clip_x0`` and return ``(low, high)`` as float64 tensors.

    ``clip_x0`` is a positive number ``c`` (bounds ``[-c, c]``) or a pair ``(low, high)`` of
    numbers, arrays or tensors with ``low <= high`` everywhere that broadcast against
    ``event_shape`` (when given).
    """
    if isinstance(clip_x0, (int, float)) and not isinstance(clip_x0, bool):
        if not (math.isfinite(clip_x0) and clip_x0 > 0):
            raise ValueError(f"clip_x0={clip_x0!r} must be a positive number or a pair (low, high)")
        low, high = torch.tensor(-float(clip_x0), dtype=torch.float64), torch.tensor(float(clip_x0), dtype=torch.float64)
    elif isinstance(clip_x0, (tuple, list)) and len(clip_x0) == 2:
        try:
            low, high = (torch.as_tensor(b, dtype=torch.float64) for b in clip_x0)
            fits = event_shape is None or torch.broadcast_shapes(low.shape, high.shape, tuple(event_shape)) == tuple(event_shape)
        except (TypeError, ValueError, RuntimeError):
            fits = False
        if not fits:
            raise ValueError(f"clip_x0=(low, high) must be numbers or arrays that broadcast to the event "
                             f"shape {tuple(event_shape)}")
        if bool(torch.isnan(low).any() or torch.isnan(high).any()):
            raise ValueError("clip_x0 bounds must not be NaN")
        if not bool((low <= high).all()):
            raise ValueError("clip_x0=(low, high) needs low <= high everywhere")
    else:
        raise ValueError(f"clip_x0 must be None, a positive number or a pair (low, high), got {clip_x0!r}")
    return low, high


def _infer_device(model, x_T, known, device):
    if device is not None:
        return torch.device(device)
    for ref in (x_T, known):
        if torch.is_tensor(ref):
            return ref.device
    params = getattr(model, "parameters", None)
    if callable(params):
        first = next(iter(params()), None)
        if first is not None:
            return first.device
    return torch.device("cpu")


def sample(model: Callable, shape, *, schedule: Schedule, sampler: str = "dpmpp_2m", steps: int = 20,
           prediction: str = "eps", eta: float = 0.0, generator: torch.Generator | None = None,
           cond=None, guidance_scale: float | None = None, known: Tensor | None = None,
           mask: Tensor | None = None, timesteps: str | Tensor = "trailing", x_T: Tensor | None = None,
           progress: bool = False, return_trajectory: bool = False, resample: int = 1,
           corrector_steps: int = 1, snr: float | None = None, clip_x0=None,
           energy: Callable | None = None, energy_scale: float = 1.0, energy_gradient: str = "x0",
           device=None, dtype: torch.dtype = torch.float32):
    """Draw samples from a diffusion model.

    Parameters
    ----------
    model : callable ``model(x_t, t, cond=None) -> Tensor`` shaped like x_t, predicting ``prediction``.
    shape : tuple ``(B, *event_shape)``.
    schedule : Schedule.
    sampler : {"ddpm", "ddim", "euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "dpmpp_2m_sde",
        "euler_maruyama", "langevin", "pc"}.
    steps : int, steps of the time grid (see :func:`model_evaluations` for the model calls).
    prediction : {"eps", "x0", "v", "score"}.
    eta : float in [0, 1], DDIM's stochasticity (``sampler="ddim"`` only).
    generator : torch.Generator, the source of all randomness.
    cond, guidance_scale : condition passed to the model; with ``guidance_scale=w`` the model is
        also called with ``cond=None`` and the outputs combined as ``u + w (c - u)``.
    known, mask : inpainting / imputation: tensors of ``shape`` (mask may broadcast), mask 1 where
        known. After every step the known part is replaced by ``known`` noised to the current time.
        ``known`` may hold NaN where mask is 0.
    resample : RePaint resampling (Lugmayr et al. 2022): each step is repeated this many times,
        re-noising from t' back to t in between. Needs known/mask.
    timesteps : "trailing" (uniform in t from 1), "logsnr" (uniform in log-SNR), "karras"
        (Karras et al. 2022, rho = 7), or an explicit tensor of times, shape (N+1,) or (N+1, B)
        (per-sample grids), strictly decreasing; increasing grids run ddim/euler/heun forward
        (encoding data to noise). With a tensor, ``steps`` is ignored.
    x_T : the starting point at the first time of the grid (default: N(0, I) noise).
    progress : show a tqdm progress bar.
    return_trajectory : also return the stacked states, shape ``(N+1, *shape)``.
    corrector_steps, snr : Langevin steps per level and their signal-to-noise ratio
        (``langevin`` and ``pc``); the step size is ``2 (snr sigma_t)^2``. ``snr=None`` takes 0.16
        for ``pc`` (Song et al. 2021) and 0.5 for ``langevin``, which has no predictor to carry the
        chain from one noise level to the next and so needs larger steps.
    clip_x0 : clamp x0_hat: a number ``c`` to [-c, c], or a pair ``(low, high)`` of per-feature
        bounds broadcasting against the event shape; None (default) never clips.
    energy, energy_scale, energy_gradient : guidance by a differentiable energy ``E(x0) -> (B,)``
        of the clean estimate (a constraint's violation, a reprojection error, a classifier's
        negative log-probability), followed down its gradient with step ``energy_scale`` at every
        model call; ``energy_gradient="x0"`` steps on the clean estimate (cheap), ``"x_t"``
        differentiates through the network (classifier guidance / DPS); see :class:`Denoiser`.
    device, dtype : where and in what dtype to sample when x_T does not say.

    Returns
    -------
    Tensor of ``shape`` (and the trajectory when ``return_trajectory``).
    """
    _check_sampler(sampler)
    check_prediction(prediction)
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be an anydiff.Schedule, got {type(schedule).__name__}")
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise ValueError(f"shape must be a tuple (B, *event_shape), got {shape!r}") from exc
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"shape must be (B, *event_shape) with positive sizes, got {shape}")
    if not (0.0 <= float(eta) <= 1.0):
        raise ValueError(f"eta={eta} must lie in [0, 1]")
    if eta != 0 and sampler != "ddim":
        raise ValueError(f"eta applies to sampler='ddim' only; got sampler={sampler!r} with eta={eta}")
    if guidance_scale is not None and cond is None:
        raise ValueError("guidance_scale needs cond: guidance contrasts the model with and without it")
    check_int(resample, "resample")
    check_int(corrector_steps, "corrector_steps")
    if resample > 1 and known is None:
        raise ValueError("resample > 1 is RePaint resampling and needs known and mask")
    if x_T is not None:
        if not torch.is_tensor(x_T) or tuple(x_T.shape) != shape:
            raise ValueError(f"x_T must be a tensor of shape {shape}")
        check_finite(x_T, "x_T")
    dev = _infer_device(model, x_T, known, device)
    dtype = x_T.dtype if x_T is not None else dtype
    known, mask = _check_inpainting(known, mask, shape, dev, dtype)

    ts = make_timesteps(schedule, steps if isinstance(timesteps, str) else None, timesteps,
                        batch=shape[0], device=dev)
    forward = bool((ts[-1] > ts[0]).all())
    if forward and (sampler not in _DETERMINISTIC or eta != 0):
        raise ValueError(f"increasing timesteps (encoding) need a deterministic sampler "
                         f"{_DETERMINISTIC} with eta=0; got sampler={sampler!r}")
    if forward and known is not None:
        raise ValueError("known/mask apply to sampling (decreasing timesteps), not to encoding")

    if clip_x0 is not None:
        clip_x0 = clip_bounds(clip_x0, shape[1:])
    den = Denoiser(model, schedule, prediction, cond=cond, guidance_scale=guidance_scale, clip_x0=clip_x0,
                   energy=energy, energy_scale=energy_scale, energy_gradient=energy_gradient)
    if snr is None:
        snr = 0.5 if sampler == "langevin" else 0.16
    if not float(snr) > 0:
        raise ValueError(f"snr={snr} must be positive")
    if schedule.zero_terminal_snr and prediction in ("eps", "score") and bool((ts[:-1] == 1).any()):
        raise ValueError(f"prediction={prediction!r} carries no information about x0 at t=1 of a "
                         "zero-terminal-SNR schedule (x0 = (x - sigma eps) / alpha with alpha = 0); "
                         "train and sample with prediction='v' or 'x0' (Lin et al. 2024)")
    state = StepState(schedule, generator, float(eta), corrector_steps, float(snr), n_steps=ts.shape[0] - 1)
    step = SAMPLERS[sampler]

    # the starting point: x_T, or the prior N(0, I) at the first time of the grid
    x = x_T.to(dev) if x_T is not None else torch.randn(
        shape, generator=generator, device=generator.device if generator is not None else dev,
        dtype=dtype).to(dev)

    def replace_known(x: Tensor, t: Tensor) -> Tensor:
        """Inpainting by replacement: the known part, noised to t, overwrites x there."""
        noisy_known = q_sample(schedule, known, t, generator=generator)
        return mask * noisy_known + (1 - mask) * x

    if known is not None:
        x = replace_known(x, ts[0])
    trajectory = [x] if return_trajectory else None
    indices = range(ts.shape[0] - 1)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=f"sampling ({sampler})", leave=False)
    with torch.no_grad():
        for i in indices:
            t, t_next = ts[i], ts[i + 1]
            state.step_index = i
            snapshot = dict(state.history)
            for r in range(resample):
                state.resample_round = r
                x_next = step(den, x, t, t_next, state)
                if known is not None:
                    x_next = replace_known(x_next, t_next)
                if r + 1 < resample:  # RePaint: back from t_next to t, then the step again
                    x = q_step(schedule, x_next, t_next, t, generator=generator)
                    state.history = dict(snapshot)
            x = x_next
            if trajectory is not None:
                trajectory.append(x)
    if trajectory is not None:
        return x, torch.stack(trajectory)
    return x


def encode(model: Callable, x0: Tensor, *, schedule: Schedule, steps: int = 50, prediction: str = "eps",
           sampler: str = "ddim", timesteps: str = "trailing", cond=None,
           guidance_scale: float | None = None, progress: bool = False) -> Tensor:
    """Deterministic encoding of data to noise: the probability-flow ODE run from t=0 to t=1
    (DDIM inversion, Song et al. 2021 sec. 4.3). ``sample(..., x_T=encode(...))`` decodes."""
    if timesteps not in ("trailing", "logsnr", "karras"):
        raise ValueError("timesteps for encode must be 'trailing', 'logsnr' or 'karras'")
    check_finite(x0, "x0")
    grid = make_timesteps(schedule, steps, timesteps, batch=1, device=x0.device)[:, 0].flip(0)
    return sample(model, tuple(x0.shape), schedule=schedule, sampler=sampler, prediction=prediction,
                  timesteps=grid, x_T=x0, cond=cond, guidance_scale=guidance_scale, progress=progress)
