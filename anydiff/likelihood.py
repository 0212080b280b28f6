"""Exact log-likelihood through the probability-flow ODE (Song et al. 2021, sec. 4.3 and app. D.2).

The ODE is integrated in log-SNR, ``lambda = log(alpha^2 / sigma^2)``, where it reads

    dx/dlambda = sigma^2/2 x - sigma/2 eps_hat(x, t(lambda))

(from ``dx~/dsigma~ = eps_hat`` with ``x~ = x/alpha``, ``sigma~ = exp(-lambda/2)``). In log-SNR the
right-hand side depends on the data distribution only, not on the schedule, so the kinks of a
discrete schedule do not slow the solver. By the instantaneous change of variables,

    log p_0(x) = log N(x_1; 0, I) + integral from lambda_max to lambda_min of div_x(dx/dlambda) dlambda,

with ``div = D sigma^2/2 - sigma/2 div_x eps_hat``. The divergence is exact (D reverse-mode passes,
for small D) or Hutchinson's estimate ``E[z^T J z]`` with fixed Rademacher probes (Grathwohl et al.
2019). The solver is the adaptive Dormand-Prince 5(4) pair with a step size per sample, so that a
sample's log-likelihood does not depend on the rest of its batch.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._utils import check_finite
from .parameterization import check_prediction, to_x0_eps
from .process import prior_log_prob
from .schedules import Schedule

__all__ = ["log_likelihood"]

# Dormand & Prince (1980) RK5(4)7M tableau
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = _A[6] + (0.0,)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_ERR = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4))
LOG_SNR_FLOOR = -20.0  # where the prior N(0, I) is taken when log-SNR at t=1 is lower (zero terminal SNR)


def _dormand_prince(f, y0: Tensor, s0: float, s1: float, rtol: float, atol: float, max_steps: int) -> Tensor:
    """Integrate dy/ds = f(s, y, rows) from s0 to s1 (either direction) for a batch y of shape (B, n).

    Every sample has its own position s and step size h, so a sample's result does not depend on
    which other samples share its batch. Each step evaluates ``f`` on the unfinished rows only:
    ``rows`` (a long tensor) says which rows of the batch ``s`` (shape (len(rows),)) and ``y``
    hold, so a batch costs what its rows need, not len(batch) times its slowest row.
    """
    B, span = y0.shape[0], s1 - s0
    direction = 1.0 if span > 0 else -1.0
    s = torch.full((B,), s0, dtype=y0.dtype, device=y0.device)
    h = torch.full_like(s, span / 64)
    y, k1 = y0.clone(), f(s, y0, torch.arange(B, device=y0.device))
    for _ in range(max_steps):
        remaining = (s1 - s) * direction
        rows = (remaining > 1e-12 * abs(span)).nonzero().squeeze(1)
        if rows.numel() == 0:
            return y
        s_r, y_r, k_r = s[rows], y[rows], k1[rows]
        h_r = direction * torch.minimum(h[rows].abs(), remaining[rows])
        ks = [k_r]
        for i in range(1, 7):
            y_i = y_r + h_r[:, None] * sum(a * k for a, k in zip(_A[i], ks))
            ks.append(f(s_r + _C[i] * h_r, y_i, rows))
        y_new = y_r + h_r[:, None] * sum(b * k for b, k in zip(_B5, ks))
        err = h_r[:, None] * sum(e * k for e, k in zip(_ERR, ks))
        scale = atol + rtol * torch.maximum(y_r.abs(), y_new.abs())
        err_norm = ((err / scale) ** 2).mean(dim=1).sqrt()
        accept = err_norm <= 1.0
        s[rows] = torch.where(accept, s_r + h_r, s_r)
        y[rows] = torch.where(accept[:, None], y_new, y_r)
        k1[rows] = torch.where(accept[:, None], ks[6], k_r)
        factor = torch.where(err_norm == 0, torch.full_like(err_norm, 5.0),
                             (0.9 * err_norm.clamp(min=1e-300) ** -0.2).clamp(0.2, 5.0))
        h[rows] = h_r * factor
    raise RuntimeError(f"log_likelihood: the ODE solver did not finish in {max_steps} steps; "
                       "raise max_steps or loosen rtol/atol")


def log_likelihood(model, x: Tensor, *, schedule: Schedule, prediction: str = "eps",
                   divergence: str = "exact", n_probes: int = 1, generator: torch.Generator | None = None,
                   cond=None, t_min: float = 1e-5, rtol: float = 1e-5, atol: float = 1e-5,
                   max_steps: int = 2000) -> Tensor:
    """Log-likelihood of data under a diffusion model, in nats per sample.

    Parameters
    ----------
    model : callable ``model(x_t, t, cond=None)`` predicting ``prediction``.
    x : Tensor, shape (B, *event_shape), the data.
    schedule : Schedule.
    divergence : "exact" (D backward passes; exact for any D, cheap for small D) or "hutchinson".
    n_probes : Rademacher probes for "hutchinson", fixed along the path.
    generator : source of the probes.
    cond : condition passed to the model; a tensor with one row per sample (first dimension B)
        follows its rows as the solver drops finished samples from the batch.
    t_min : the ODE starts at t_min > 0 (the score is singular at t = 0 for a learned model); the
        result is the density of x under the model's marginal at t_min, a negligible difference
        when sigma_{t_min} is small against the data's scale.
    rtol, atol, max_steps : tolerances of the adaptive solver.

    Returns
    -------
    Tensor, shape (B,), float64: ``log p(x)`` in nats.
    """
    check_prediction(prediction)
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence={divergence!r} is unknown; use 'exact' or 'hutchinson'")
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes={n_probes!r} must be a positive integer")
    if not torch.is_tensor(x) or x.ndim < 2:
        raise ValueError("x must be a tensor of shape (B, *event_shape)")
    check_finite(x, "x")
    if not (0.0 < t_min < 1.0):
        raise ValueError(f"t_min={t_min} must lie in (0, 1)")
    B, event_shape, dtype = x.shape[0], x.shape[1:], x.dtype
    D = x[0].numel()
    dev = x.device
    lam_max = float(schedule.log_snr(torch.tensor([t_min], dtype=torch.float64))[0])
    lam_min = max(float(schedule.log_snrs[-1]), LOG_SNR_FLOOR)
    if divergence == "hutchinson":
        gen_dev = generator.device if generator is not None else dev
        probes = (torch.randint(0, 2, (n_probes, B, D), generator=generator, device=gen_dev)
                  .to(dev, torch.float64) * 2 - 1)

    def eps_and_div(lam_t: Tensor, x_flat: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        n = rows.shape[0]
        t = schedule.t_of_log_snr(lam_t)
        alpha, sigma = torch.sigmoid(lam_t).sqrt()[:, None], torch.sigmoid(-lam_t).sqrt()[:, None]
        cond_rows = cond[rows] if torch.is_tensor(cond) and cond.ndim > 0 and cond.shape[0] == B else cond
        with torch.enable_grad():
            x_in = x_flat.detach().to(dtype).requires_grad_(True)
            out = model(x_in.reshape(n, *event_shape), t.to(torch.float64 if dtype == torch.float64 else torch.float32),
                        cond_rows)
            if not torch.is_tensor(out) or out.shape != (n, *event_shape):
                raise ValueError(f"model output must be shaped like x {tuple(x.shape)}")
            _, eps = to_x0_eps(out.reshape(n, D), prediction, x_in, alpha.to(dtype), sigma.to(dtype))
            if divergence == "exact":
                div = sum(torch.autograd.grad(eps[:, i].sum(), x_in, retain_graph=i + 1 < D)[0][:, i]
                          for i in range(D))
            else:
                div = sum((torch.autograd.grad((eps * z[rows].to(dtype)).sum(), x_in, retain_graph=j + 1 < n_probes)[0]
                           * z[rows].to(dtype)).sum(1) for j, z in enumerate(probes)) / n_probes
        return eps.detach().to(torch.float64), div.detach().to(torch.float64)

    def rhs(lam: Tensor, y: Tensor, rows: Tensor) -> Tensor:
        x_flat = y[:, :D]
        sigma2 = torch.sigmoid(-lam)
        eps, div_eps = eps_and_div(lam, x_flat, rows)
        dx = 0.5 * sigma2[:, None] * x_flat - 0.5 * sigma2.sqrt()[:, None] * eps
        ddelta = 0.5 * sigma2 * D - 0.5 * sigma2.sqrt() * div_eps
        return torch.cat([dx, ddelta[:, None]], dim=1)

    y0 = torch.cat([x.reshape(B, D).to(torch.float64), torch.zeros(B, 1, dtype=torch.float64, device=dev)], 1)
    y1 = _dormand_prince(rhs, y0, lam_max, lam_min, rtol, atol, max_steps)
    return prior_log_prob(y1[:, :D]) + y1[:, D]
