"""Time grids for the samplers: where along t in [0, 1] the model is evaluated.

Every grid starts at t = 1 and ends at t = 0 exactly, so sampling starts from the prior and
returns clean data.

* ``"trailing"``: ``N + 1`` times uniform in t (Lin et al. 2024, table 2: the "trailing" spacing
  that always includes the last step). With T divisible by N these are points of the discrete
  grid, and DDPM strides it.
* ``"logsnr"``: N times uniform in log-SNR from t = 1 to the smallest noise level of the schedule
  (t = 1/T), then t = 0 (Lu et al. 2022, "DPM-Solver", sec. 3.3).
* ``"karras"``: N times from ``sigma~_max`` to ``sigma~_min`` (``sigma~ = sigma/alpha``) with the
  rho = 7 spacing of Karras et al. (2022, eq. 5), then t = 0.

The log-SNR and Karras grids span at most ``sigma~ <= 80`` at the noisy end (``SIGMA_TILDE_MAX``,
the sigma_max of Karras et al. 2022): beyond it x_t carries no visible trace of data at unit scale,
and a schedule such as cosine (sigma~(1) ~ 2e4) or one with zero terminal SNR (sigma~(1) = inf)
would otherwise spend most steps there. Their first time is then set to exactly 1, so the first
step covers the rest of the way from the prior.

Optimized grids (:func:`optimize_grid`, :class:`GridDensity`) are chosen for one model from its own
denoiser: they place the steps where the data prediction x0_hat changes fastest along the
probability-flow trajectories, so that every step of an order-p solver makes about the same local
error (the derivation is in :func:`optimize_grid`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._utils import check_int, check_time
from .schedules import Schedule

__all__ = ["make_timesteps", "SPACINGS", "GridDensity", "optimize_grid", "measure_x0_derivatives",
           "density_from_derivatives", "solver_order"]

SPACINGS = ("trailing", "logsnr", "karras")
SIGMA_TILDE_MAX = 80.0


def _log_snr_range(schedule: Schedule) -> tuple[float, float]:
    lam = schedule.log_snrs
    lam_floor = -2 * math.log(SIGMA_TILDE_MAX)
    return max(float(lam[-1]), lam_floor), float(lam[1])


def _grid(schedule: Schedule, steps: int, spacing: str) -> Tensor:
    if spacing == "trailing":
        return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    lam_min, lam_max = _log_snr_range(schedule)
    if spacing == "logsnr":
        lam = torch.linspace(lam_min, lam_max, steps, dtype=torch.float64)
    else:  # karras: sigma~ = exp(-lambda/2), rho = 7
        rho = 7.0
        hi, lo = torch.tensor([-lam_min / 2, -lam_max / 2], dtype=torch.float64).exp()
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        sig = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
        lam = -2 * sig.log()
    t = schedule.t_of_log_snr(lam)
    t[0] = 1.0
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


def make_timesteps(schedule: Schedule, steps: int | None, timesteps: str | Tensor = "trailing", *,
                   batch: int = 1, device=None) -> Tensor:
    """The time grid of a sampler, shape ``(N + 1, batch)``, float64.

    Parameters
    ----------
    schedule : Schedule
    steps : int, the N of a named spacing (ignored for an explicit tensor).
    timesteps : "trailing", "logsnr", "karras", or a tensor of times of shape (N+1,) or (N+1, batch),
        strictly monotone in the first dimension, values in [0, 1].
    """
    if isinstance(timesteps, str):
        if timesteps not in SPACINGS:
            raise ValueError(f"timesteps={timesteps!r} is unknown; use one of {SPACINGS} or a tensor of times")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps={steps!r} must be a positive integer")
        grid = _grid(schedule, steps, timesteps)
    else:
        if not torch.is_tensor(timesteps):
            raise ValueError("timesteps must be a spacing name or a torch.Tensor of times")
        grid = check_time(timesteps, "timesteps").to(torch.float64)
        if grid.ndim not in (1, 2) or grid.shape[0] < 2:
            raise ValueError(f"timesteps must have shape (N+1,) or (N+1, B) with N >= 1, got {tuple(grid.shape)}")
        if grid.ndim == 2 and grid.shape[1] != batch:
            raise ValueError(f"per-sample timesteps must have shape (N+1, {batch}), got {tuple(grid.shape)}")
        diffs = grid[1:] - grid[:-1]
        if not (bool((diffs < 0).all()) or bool((diffs > 0).all())):
            raise ValueError("timesteps must be strictly decreasing (sampling) or strictly increasing (encoding)")
    if grid.ndim == 1:
        grid = grid[:, None].expand(-1, batch)
    return grid.to(device if device is not None else "cpu").contiguous()


# ------------------------------------------------------------------------------------------------
# Grids optimized for one model
# ------------------------------------------------------------------------------------------------

#: The order p of each sampler's steps in lambda, which sets the derivative of x0_hat its local
#: error follows (:func:`solver_order`); samplers not listed are first order.
SOLVER_ORDERS = {"dpmpp_2m": 2, "dpmpp_2m_sde": 2, "heun": 2, "dpmpp_3m": 3, "unipc": 3}
MAX_ORDER = 3


def solver_order(sampler: str) -> int:
    """The order p (1, 2 or 3) whose grid :class:`GridDensity` suits ``sampler``."""
    return SOLVER_ORDERS.get(sampler, 1)


class GridDensity:
    """A density of steps over log-SNR from which a grid of any number of steps is drawn.

    Stored as ``K`` knots: increasing log-SNRs ``log_snr`` (K,) spanning the grid's range and
    the cumulative step mass ``cdf`` (K,) there, from 0 to 1 and strictly increasing (the
    density between knots is constant, so the CDF is piecewise linear and inverts exactly).

    :meth:`timesteps` gives ``N + 1`` times like the ``"logsnr"`` spacing: the N times at which the
    model is evaluated are the log-SNRs at cumulative mass ``0, 1/N, ..., (N-1)/N`` (each step
    covers 1/N of the mass; the first is moved to t = 1 exactly, as for ``"logsnr"``), then t = 0,
    so the last step, to the data, covers the mass above ``(N-1)/N``.
    """

    def __init__(self, log_snr, cdf):
        lam = torch.as_tensor(log_snr, dtype=torch.float64).detach().cpu()
        cdf = torch.as_tensor(cdf, dtype=torch.float64).detach().cpu()
        if lam.ndim != 1 or lam.shape != cdf.shape or lam.numel() < 2:
            raise ValueError(f"log_snr and cdf must be 1-D of the same length >= 2, got shapes "
                             f"{tuple(lam.shape)} and {tuple(cdf.shape)}")
        if not (bool(torch.isfinite(lam).all()) and bool(torch.isfinite(cdf).all())):
            raise ValueError("log_snr and cdf must be finite")
        if not bool((lam[1:] > lam[:-1]).all()):
            raise ValueError("log_snr knots must be strictly increasing")
        if not bool((cdf[1:] > cdf[:-1]).all()) or abs(float(cdf[0])) > 1e-9 or abs(float(cdf[-1]) - 1) > 1e-9:
            raise ValueError("cdf must increase strictly from 0 to 1")
        self.log_snr, self.cdf = lam, cdf

    def __repr__(self) -> str:
        return (f"GridDensity(knots={self.log_snr.numel()}, log_snr=[{float(self.log_snr[0]):.3g}, "
                f"{float(self.log_snr[-1]):.3g}])")

    def density(self, lam) -> Tensor:
        """The step density at log-SNR ``lam`` (per unit of log-SNR; 0 outside the knots)."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        rho = (self.cdf[1:] - self.cdf[:-1]) / (self.log_snr[1:] - self.log_snr[:-1])
        idx = (torch.searchsorted(self.log_snr, lam.contiguous(), right=True) - 1).clamp(0, rho.numel() - 1)
        inside = (lam >= self.log_snr[0]) & (lam <= self.log_snr[-1])
        return torch.where(inside, rho[idx], torch.zeros_like(lam))

    def quantile(self, u) -> Tensor:
        """The log-SNR at cumulative step mass ``u`` in [0, 1] (inverse of the piecewise-linear CDF)."""
        u = torch.as_tensor(u, dtype=torch.float64).clamp(0, 1)
        idx = (torch.searchsorted(self.cdf, u.contiguous(), right=True) - 1).clamp(0, self.cdf.numel() - 2)
        c0, c1 = self.cdf[idx], self.cdf[idx + 1]
        l0, l1 = self.log_snr[idx], self.log_snr[idx + 1]
        return l0 + (u - c0) / (c1 - c0) * (l1 - l0)

    def timesteps(self, schedule: Schedule, steps: int) -> Tensor:
        """The time grid of ``steps`` steps, shape ``(steps + 1,)`` float64, from t = 1 to t = 0."""
        check_int(steps, "steps")
        lam = self.quantile(torch.arange(steps, dtype=torch.float64) / steps)
        t = schedule.t_of_log_snr(lam)
        t[0] = 1.0
        grid = torch.cat([t, torch.zeros(1, dtype=torch.float64)])
        if not bool((grid[1:] < grid[:-1]).all()):  # knots closer than the schedule resolves
            raise ValueError(f"steps={steps}: the density gives a grid with repeated times; use fewer steps")
        return grid


def measure_x0_derivatives(model, schedule: Schedule, *, prediction: str = "eps", event_shape=None,
                           x_T: Tensor | None = None, n_probe: int = 256, n_fine: int = 100, cond=None,
                           generator: torch.Generator | None = None, clip_x0=None,
                           dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """How fast the data prediction changes along the model's probability-flow trajectories.

    Runs DPM-Solver++(2M) with ``n_fine`` steps on the ``"logsnr"`` grid (uniform in log-SNR)
    from ``x_T`` (or ``n_probe`` draws of N(0, I) of ``event_shape``), records x0_hat at every
    grid time and takes central finite differences in ``lambda = log-SNR`` over the uniform part
    of the grid (spacing d): ``x0' = (x_{i+1} - x_{i-1}) / 2d``, ``x0'' = (x_{i+1} - 2 x_i +
    x_{i-1}) / d^2``, ``x0''' = (x_{i+2} - 2 x_{i+1} + 2 x_{i-1} - x_{i-2}) / 2d^3``.

    Returns
    -------
    lam : Tensor (M,), float64, the log-SNRs of the centres (``M = n_fine - 5``).
    msq : Tensor (3, M), float64, the mean over probes and coordinates of
        ``(d^p x0_hat / d lambda^p)^2`` for p = 1, 2, 3.
    """
    from .parameterization import check_prediction, to_x0_eps
    from .sampling import clip_bounds, sample  # sampling imports this module

    check_prediction(prediction)
    check_int(n_fine, "n_fine", 8)
    if x_T is None:
        if event_shape is None:
            raise ValueError("event_shape is needed when x_T is not given")
        check_int(n_probe, "n_probe")
        shape = (n_probe, *tuple(int(s) for s in event_shape))
        x_T = torch.randn(shape, generator=generator, dtype=torch.float64,
                          device=generator.device if generator is not None else "cpu")
    elif not torch.is_tensor(x_T) or x_T.ndim < 2:
        raise ValueError("x_T must be a tensor of shape (n_probe, *event_shape)")
    x_T = x_T.to(dtype)
    bounds = None if clip_x0 is None else clip_bounds(clip_x0)
    grid = make_timesteps(schedule, n_fine, "logsnr")[:, 0]
    lam_min, lam_max = _log_snr_range(schedule)
    lam = torch.linspace(lam_min, lam_max, n_fine, dtype=torch.float64)
    d = float(lam[1] - lam[0])
    window: list[Tensor] = []
    centres, sums = [], []
    calls = [0]

    def recorder(x, t, c=None):
        out = model(x, t, c)
        calls[0] += 1
        if calls[0] == 1:  # the first call is at t = 1, outside the uniform part
            return out
        shape = (-1,) + (1,) * (x.ndim - 1)
        alpha, sigma = (v.reshape(shape).to(x.device) for v in schedule.alpha_sigma(t.to(torch.float64)))
        x0, _ = to_x0_eps(out.to(torch.float64), prediction, x.to(torch.float64), alpha, sigma)
        if bounds is not None:
            x0 = torch.clamp(x0, *(b.to(x.device) for b in bounds))
        window.append(x0)
        if len(window) == 5:
            a, b, m, e, f = window
            derivs = ((e - b) / (2 * d), (e - 2 * m + b) / d**2, (f - 2 * e + 2 * b - a) / (2 * d**3))
            sums.append(torch.stack([v.pow(2).mean() for v in derivs]).cpu())
            centres.append(lam[calls[0] - 3])
            window.pop(0)
        return out

    with torch.no_grad():
        sample(recorder, tuple(x_T.shape), schedule=schedule, sampler="dpmpp_2m", prediction=prediction,
               timesteps=grid, x_T=x_T, cond=cond)
    return torch.stack(centres).to(torch.float64), torch.stack(sums, 1).to(torch.float64)


def _smooth(values: Tensor, width: float) -> Tensor:
    """Gaussian smoothing over the index (``width`` = standard deviation in samples), with the
    kernel renormalized at the edges."""
    if width <= 0:
        return values
    r = int(math.ceil(3 * width))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / width) ** 2)[None, None]
    num = torch.nn.functional.conv1d(values[None, None], k, padding=r)[0, 0]
    den = torch.nn.functional.conv1d(torch.ones_like(values)[None, None], k, padding=r)[0, 0]
    return num / den


UNITS = ("state", "data")


def _check_density_args(order, floor, smooth, knots, units="data") -> tuple[int, ...]:
    orders = tuple(order) if isinstance(order, (tuple, list)) else (order,)
    if not orders or any(isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= MAX_ORDER for p in orders):
        raise ValueError(f"order={order!r} must be 1, 2 or 3, or a tuple of them")
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 < floor <= 1:
        raise ValueError(f"floor={floor!r} must lie in (0, 1]")
    if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or not smooth >= 0:
        raise ValueError(f"smooth={smooth!r} must be a number >= 0")
    check_int(knots, "knots", 2)
    if units not in UNITS:
        raise ValueError(f"units={units!r} must be one of {UNITS}")
    return orders


def density_from_derivatives(lam: Tensor, msq: Tensor, schedule: Schedule, *, order: int = 2,
                             floor: float = 0.05, smooth: float = 0.5, knots: int = 128,
                             units: str = "data") -> GridDensity:
    """The step density ``rho ∝ (E||x0_hat^(p)||^2)^(1 / (2(p+1)))`` (p = ``order``; with the mean
    square times ``alpha^2`` for ``units="state"``, see :func:`optimize_grid`) from the mean squares of
    :func:`measure_x0_derivatives`, smoothed with a Gaussian of ``smooth`` log-SNR, mixed with
    the uniform density over the log-SNR range of the ``"logsnr"`` grid (weight ``floor``) and
    tabulated at ``knots`` points uniform in log-SNR over that range."""
    _check_density_args(order, floor, smooth, knots, units)
    lam_min, lam_max = _log_snr_range(schedule)
    msq = msq[order - 1].clamp(min=0).nan_to_num(0.0, posinf=0.0)
    if units == "state":
        msq = msq * torch.sigmoid(lam)  # alpha^2 = sigmoid(log-SNR) for a VP process
    g = msq ** (1.0 / (2 * (order + 1)))
    if lam.numel() > 1:
        g = _smooth(g, float(smooth) / float(lam[1] - lam[0]))
    grid = torch.linspace(lam_min, lam_max, knots, dtype=torch.float64)
    # g at the knots: linear between the measured centres, constant beyond them
    if lam.numel() > 1:
        idx = (torch.searchsorted(lam.contiguous(), grid, right=True) - 1).clamp(0, lam.numel() - 2)
        w = ((grid - lam[idx]) / (lam[idx + 1] - lam[idx])).clamp(0, 1)
        rho = g[idx] * (1 - w) + g[idx + 1] * w
    else:
        rho = g.expand(knots)
    mass = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(0.5 * (rho[1:] + rho[:-1]) * grid.diff(), 0)])
    uniform = (grid - lam_min) / (lam_max - lam_min)
    if not (math.isfinite(float(mass[-1])) and float(mass[-1]) > 0):
        return GridDensity(grid, uniform)  # x0_hat does not change: uniform in log-SNR
    cdf = (1 - floor) * mass / mass[-1] + floor * uniform
    cdf[0], cdf[-1] = 0.0, 1.0
    return GridDensity(grid, cdf)


def optimize_grid(model, schedule: Schedule, *, prediction: str = "eps", event_shape=None,
                  x_T: Tensor | None = None, n_probe: int = 256, n_fine: int = 100, order: int | tuple = 2,
                  floor: float = 0.05, smooth: float = 0.5, knots: int = 128, units: str = "data",
                  cond=None, generator: torch.Generator | None = None, clip_x0=None):
    """A time grid chosen for one model: steps placed to equalise the solver's local error.

    Method. An exponential multistep solver of order p (DDIM: p = 1; DPM-Solver++(2M): p = 2;
    (3M), UniPC: p = 3) integrates ``x' = (sigma'/sigma) x + alpha' int_0^h e^{-(h-u)} x0(lambda + u) du``
    exactly up to the polynomial it puts through the last p data predictions; that polynomial
    misses x0 by ``~ x0^(p) h^p`` over a step h in lambda, so the step's local error, in units of
    clean data, is ``e ~ C h^(p+1) ||x0_hat^(p)(lambda)||``, the derivative taken along the
    trajectory. A grid of N steps with step density rho (``int rho dlambda = 1``, so
    ``h = 1/(N rho)``) has total error ``sum_i e_i ~ int C h^p g dlambda = C N^-p int rho^-p g
    dlambda`` with ``g = ||x0^(p)||``. Minimising over rho under ``int rho = 1`` (Lagrange:
    ``-p rho^(-p-1) g + mu = 0``) gives ``rho ∝ g^(1/(p+1))`` -- the density at which every step
    makes the same local error ``h^(p+1) g``. Over many trajectories g is the root mean square:

        rho(lambda) ∝ (E ||x0_hat^(p)(lambda)||^2)^(1 / (2 (p + 1)))      (units="data", default).

    ``units="state"`` measures the error in the state x instead: the step adds its error to x
    multiplied by ``alpha'`` (the factor in front of the integral), and for standardized data the
    flow carries an error in x to the end roughly unchanged (for data N(m, I) the trajectory
    ``x = alpha m + c sqrt(alpha^2 + sigma^2)`` moves perturbations without growth or decay), so
    ``g = alpha ||x0^(p)||`` and ``rho ∝ (alpha^2 E ||x0_hat^(p)||^2)^(1 / (2 (p + 1)))``: fewer
    steps at high noise. With the exact denoisers of benchmarks/samplers.py it halved the
    path-wise error of DPM-Solver++(2M) at 10 steps on the 2-D ring (mean distance to a 500-step
    solution from the same noise: 0.046 against 0.088 for "data"; trailing 0.067), but sampled
    the 16-D mixture worse (sliced W2 0.052 against 0.035 for "data"; trailing 0.064), and the
    distribution is what a sampler is for, hence the default.

    The mean square comes from :func:`measure_x0_derivatives` (one fine DPM-Solver++(2M) run of
    ``n_fine`` steps uniform in log-SNR from ``n_probe`` noise draws, finite differences of
    x0_hat); it is smoothed with a Gaussian of ``smooth`` log-SNR and mixed with the uniform
    log-SNR density (weight ``floor``), so that no stretch of the range goes without steps. The
    range is that of the ``"logsnr"`` spacing (:meth:`GridDensity.timesteps` moves its first time
    to t = 1 and ends with the step to t = 0).

    Parameters
    ----------
    model, schedule, prediction, cond, clip_x0 : as for :func:`anydiff.sample`.
    event_shape : shape of one sample (needed unless ``x_T`` is given).
    x_T : optional starting noise ``(n_probe, *event_shape)``; else ``n_probe`` N(0, I) draws
        from ``generator``.
    n_fine : steps of the measuring run (>= 8); the model is called n_fine times on n_probe rows.
    order : 1, 2 or 3 (:func:`solver_order` of the sampler), or a tuple of them, which returns a
        dict ``{order: GridDensity}`` from one measuring run.
    floor, smooth, knots : see above; ``knots`` (log-SNR, mass) pairs are stored.
    units : "state" (default) or "data", the units of the local error (see above).

    Returns
    -------
    GridDensity, or a dict of them when ``order`` is a tuple; ``.timesteps(schedule, N)`` gives
    the grid of N steps for ``sample(..., timesteps=grid)``.
    """
    orders = _check_density_args(order, floor, smooth, knots, units)
    lam, msq = measure_x0_derivatives(model, schedule, prediction=prediction, event_shape=event_shape, x_T=x_T,
                                      n_probe=n_probe, n_fine=n_fine, cond=cond, generator=generator,
                                      clip_x0=clip_x0)
    out = {p: density_from_derivatives(lam, msq, schedule, order=p, floor=floor, smooth=smooth, knots=knots,
                                       units=units) for p in orders}
    return out if isinstance(order, (tuple, list)) else out[orders[0]]
