"""Noise schedules of continuous time t in [0, 1], variance preserving.

A :class:`Schedule` is built from the betas of a discrete T-step chain. Step k lies at t = k/T
exactly (``alpha_sigma(k / T)`` gives ``alpha_bars[k]``); between grid points the log
signal-to-noise ratio ``lambda_t = log(alpha_t**2 / sigma_t**2)`` is linear in t. On an interval
with an infinite end (t in [0, 1/T], where lambda_0 = +inf, and the last interval of a schedule
with zero terminal SNR, where lambda_T = -inf) the vanishing variance is linear in t instead:
``sigma_t**2`` on the first interval, ``alpha_t**2`` on the last. That keeps every quantity
continuous and exact on the grid.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._utils import append_dims, check_time

__all__ = ["Schedule", "linear", "cosine", "sigmoid", "rescale_zero_terminal_snr"]

SNAP = 1e-9  # |t*T - k| below this counts as the grid point k


class Schedule:
    """A variance-preserving noise schedule ``x_t = alpha_t x0 + sigma_t eps``.

    Parameters
    ----------
    betas : Tensor, shape (T,)
        Per-step variances of the discrete chain, each in (0, 1]. Only the last may be 1
        (zero terminal SNR).

    Attributes
    ----------
    T : int
    betas : Tensor, shape (T,), float64
    alpha_bars : Tensor, shape (T + 1,), float64, ``alpha_bars[0] == 1``,
        ``alpha_bars[k] = prod_{i<=k} (1 - beta_i)``.
    log_snrs : Tensor, shape (T + 1,), float64, ``+inf`` at k = 0.
    """

    def __init__(self, betas: Tensor):
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.numel() == 0:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not bool(torch.isfinite(betas).all()):
            raise ValueError("betas contains NaN or infinite values")
        if bool((betas <= 0).any()) or bool((betas > 1).any()):
            raise ValueError("betas must lie in (0, 1]")
        if bool((betas[:-1] >= 1).any()):
            raise ValueError("betas: only the last beta may equal 1 (zero terminal SNR)")
        self.T = int(betas.numel())
        self.betas = betas
        alpha_bars = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
        alpha_bars[-1] = 0.0 if float(betas[-1]) == 1.0 else alpha_bars[-1]
        if bool((alpha_bars[1:] >= 1).any()):
            raise ValueError("betas are too small: alpha_bars must fall below 1 after step 0")
        self.alpha_bars = alpha_bars
        self.log_snrs = torch.log(alpha_bars) - torch.log1p(-alpha_bars)
        self._device_tables: dict[torch.device, tuple[Tensor, Tensor]] = {}

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def from_betas(cls, betas) -> "Schedule":
        """Build a schedule from per-step betas, shape (T,)."""
        return cls(torch.as_tensor(betas, dtype=torch.float64))

    @classmethod
    def from_alpha_bars(cls, alpha_bars) -> "Schedule":
        """Build a schedule from ``alpha_bars[1:]`` (shape (T,)), decreasing in (0, 1) (the last may be 0)."""
        ab = torch.as_tensor(alpha_bars, dtype=torch.float64)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        return cls(1 - ab / prev)

    def __repr__(self) -> str:
        return (f"Schedule(T={self.T}, alpha_bar_T={float(self.alpha_bars[-1]):.3g}, "
                f"log_snr_range=[{float(self.log_snrs[-1]):.3g}, {float(self.log_snrs[1]):.3g}])")

    @property
    def zero_terminal_snr(self) -> bool:
        """True when ``alpha_bars[T] == 0``: x at t=1 is pure noise."""
        return float(self.alpha_bars[-1]) == 0.0

    def rescale_zero_terminal_snr(self) -> "Schedule":
        """Return this schedule rescaled to zero terminal SNR (Lin et al. 2024, Alg. 1)."""
        return rescale_zero_terminal_snr(self)

    # -- noise levels of continuous t ----------------------------------------------------------
    def _tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if device not in self._device_tables:
            self._device_tables[device] = (self.alpha_bars.to(device), self.log_snrs.to(device))
        return self._device_tables[device]

    def _locate(self, t: Tensor, check: bool = True):
        t = (check_time(t) if check else t).to(torch.float64)
        u = t * self.T
        u = torch.where((u - u.round()).abs() < SNAP, u.round(), u)
        k = u.floor().clamp(0, self.T - 1)
        return k.long(), u - k

    def alpha2_sigma2(self, t: Tensor, *, check: bool = True) -> tuple[Tensor, Tensor]:
        """``(alpha_t**2, sigma_t**2)`` in float64, each shaped like ``t``.

        ``check=False`` skips the validation of t (which reads values back from the device) for
        times the library drew itself, e.g. inside a captured CUDA graph.
        """
        k, f = self._locate(t, check)
        ab, lam = self._tables(k.device)
        lam_t = (1 - f) * lam[k] + f * lam[k + 1]
        alpha2 = torch.sigmoid(lam_t)
        sigma2 = torch.sigmoid(-lam_t)
        # first interval: lambda_0 = +inf, sigma^2 linear in t from 0 to 1 - alpha_bars[1]
        first = k == 0
        s2_first = f * (1 - ab[1])
        # last interval of a zero-terminal-SNR schedule: alpha^2 linear in t down to 0
        last = (k == self.T - 1) & torch.isinf(lam[self.T])
        a2_last = (1 - f) * ab[self.T - 1]
        sigma2 = torch.where(first, s2_first, torch.where(last, 1 - a2_last, sigma2))
        alpha2 = torch.where(first, 1 - s2_first, torch.where(last, a2_last, alpha2))
        return alpha2, sigma2

    def alpha_sigma(self, t: Tensor, *, check: bool = True) -> tuple[Tensor, Tensor]:
        """Signal and noise scales ``(alpha_t, sigma_t)`` at times ``t``.

        Parameters
        ----------
        t : Tensor, any shape, values in [0, 1]

        Returns
        -------
        alpha_t, sigma_t : Tensor, float64, shaped like ``t``, ``alpha_t**2 + sigma_t**2 == 1``.
        """
        alpha2, sigma2 = self.alpha2_sigma2(t, check=check)
        return alpha2.sqrt(), sigma2.sqrt()

    def log_snr(self, t: Tensor) -> Tensor:
        """``lambda_t = log(alpha_t**2 / sigma_t**2)`` in float64 (+inf at t=0)."""
        alpha2, sigma2 = self.alpha2_sigma2(t)
        return torch.log(alpha2) - torch.log(sigma2)

    def beta(self, t: Tensor) -> Tensor:
        """Instantaneous rate ``beta(t) = -d log(alpha_t**2) / dt`` of the VP-SDE, float64.

        At a grid point the one-sided rate of the interval to the right is used. Infinite at
        t=1 for a zero-terminal-SNR schedule.
        """
        k, f = self._locate(t)
        ab, lam = self._tables(k.device)
        alpha2, sigma2 = self.alpha2_sigma2(t)
        beta = -sigma2 * self.T * (lam[k + 1] - lam[k])
        first = k == 0
        last = (k == self.T - 1) & torch.isinf(lam[self.T])
        beta = torch.where(first, self.T * (1 - ab[1]) / alpha2, beta)
        return torch.where(last, self.T * ab[self.T - 1] / alpha2, beta)

    def t_of_log_snr(self, lam: Tensor) -> Tensor:
        """Inverse of :meth:`log_snr`: the time t in [0, 1] with ``log_snr(t) == lam`` (float64)."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        if bool(torch.isnan(lam).any()):
            raise ValueError("lam contains NaN")
        ab, grid = self._tables(lam.device)
        lam_c = lam.clamp(min=float(grid[-1]))
        # interior: find k in [1, T-1] with grid[k] >= lam >= grid[k + 1] (grid decreases)
        idx = torch.searchsorted(-grid[1:].contiguous(), (-lam_c).contiguous())
        k = idx.clamp(1, max(self.T - 1, 1))
        lam_k, lam_k1 = grid[k], grid[(k + 1).clamp(max=self.T)]
        f = ((lam_k - lam_c) / (lam_k - lam_k1)).nan_to_num(0.0).clamp(0, 1)
        t = (k.to(torch.float64) + f) / self.T
        # last interval of a zero-terminal-SNR schedule: alpha^2 = (1 - f) alpha_bars[T-1]
        if self.zero_terminal_snr:
            in_last = lam_c < grid[self.T - 1]
            f_last = 1 - torch.sigmoid(lam_c) / ab[self.T - 1]
            t = torch.where(in_last, (self.T - 1 + f_last) / self.T, t)
        # first interval: sigma^2 = f (1 - alpha_bars[1])
        f_first = (torch.sigmoid(-lam) / (1 - ab[1])).clamp(0, 1)
        t = torch.where(lam >= grid[1], f_first / self.T, t)
        return t.clamp(0, 1)

    # -- the forward process (implemented in anydiff.process) ----------------------------------
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None,
                 generator: torch.Generator | None = None, *, check: bool = True) -> Tensor:
        """Draw ``x_t ~ q(x_t | x0) = N(alpha_t x0, sigma_t**2 I)``; see :func:`anydiff.process.q_sample`."""
        from . import process

        return process.q_sample(self, x0, t, noise=noise, generator=generator, check=check)

    def q_posterior(self, x0: Tensor, x_t: Tensor, t: Tensor, s_: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of ``q(x_s | x_t, x0)`` for ``s_ < t``; see :func:`anydiff.process.q_posterior`."""
        from . import process

        return process.q_posterior(self, x0, x_t, t, s_)

    def coefficients(self, t: Tensor, like: Tensor, *, check: bool = True) -> tuple[Tensor, Tensor]:
        """``(alpha_t, sigma_t)`` broadcast against ``like`` (shape ``(B, *event)``), in its dtype."""
        alpha, sigma = self.alpha_sigma(t, check=check)
        return (append_dims(alpha, like.ndim).to(like.dtype), append_dims(sigma, like.ndim).to(like.dtype))


def _validate_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T={T!r} must be a positive integer (the number of discrete steps)")
    return T


def _finish(schedule: Schedule, zero_terminal_snr: bool) -> Schedule:
    return rescale_zero_terminal_snr(schedule) if zero_terminal_snr else schedule


def linear(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, *,
           zero_terminal_snr: bool = False) -> Schedule:
    """Betas linear from ``beta_start`` to ``beta_end`` (Ho et al. 2020)."""
    T = _validate_T(T)
    if not (0 < beta_start <= beta_end < 1):
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}")
    return _finish(Schedule(torch.linspace(beta_start, beta_end, T, dtype=torch.float64)), zero_terminal_snr)


def cosine(T: int = 1000, s: float = 0.008, max_beta: float = 0.999, *,
           zero_terminal_snr: bool = False) -> Schedule:
    """``alpha_bar(t) = f(t)/f(0)``, ``f(t) = cos^2((t + s)/(1 + s) * pi/2)``, betas capped at
    ``max_beta`` (Nichol & Dhariwal 2021, eq. 17)."""
    T = _validate_T(T)
    if not (s > 0) or not (0 < max_beta <= 1):
        raise ValueError(f"need s > 0 and 0 < max_beta <= 1, got s={s}, max_beta={max_beta}")
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(min=1e-12, max=max_beta)
    return _finish(Schedule(betas), zero_terminal_snr)


def sigmoid(T: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0,
            max_beta: float = 0.999, *, zero_terminal_snr: bool = False) -> Schedule:
    """Sigmoid schedule of Chen (2023), "On the importance of noise scheduling", Alg. 1:
    ``alpha_bar(t) = (v(1) - v(t)) / (v(1) - v(0))``, ``v(t) = sigmoid((start + t (end - start)) / tau)``."""
    T = _validate_T(T)
    if not (end > start) or not (tau > 0):
        raise ValueError(f"need end > start and tau > 0, got start={start}, end={end}, tau={tau}")
    t = torch.arange(T + 1, dtype=torch.float64) / T
    v = lambda z: torch.sigmoid(torch.as_tensor(z, dtype=torch.float64) / tau)  # noqa: E731
    v0, v1 = v(start), v(end)
    alpha_bar = ((v1 - v(start + t * (end - start))) / (v1 - v0)).clamp(min=1e-9, max=1.0)
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(min=1e-12, max=max_beta)
    return _finish(Schedule(betas), zero_terminal_snr)


def rescale_zero_terminal_snr(schedule: Schedule) -> Schedule:
    """Shift and scale ``sqrt(alpha_bars[1:])`` so that the last is 0 and the first is kept
    (Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed", Alg. 1)."""
    a = schedule.alpha_bars[1:].sqrt()
    a_first, a_last = a[0].clone(), a[-1].clone()
    if schedule.T < 2:
        raise ValueError("rescale_zero_terminal_snr needs T >= 2")
    a = (a - a_last) * a_first / (a_first - a_last)
    return Schedule.from_alpha_bars(a**2)
