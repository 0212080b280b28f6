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
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._utils import check_time
from .schedules import Schedule

__all__ = ["make_timesteps", "SPACINGS"]

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
