"""Matplotlib helpers for 2-D diffusion: samples, the forward process, schedules, sampling paths and
densities.

Optional: matplotlib is imported inside the functions, and nothing else in the package imports this
module. Every function returns the ``matplotlib.figure.Figure`` it drew on; the functions that
draw one panel take ``ax=None`` and draw there when given (returning ``ax.figure``), else on a new
figure. None calls ``plt.show()``. Points may be numpy arrays or torch tensors.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from ._utils import check_int
from .schedules import Schedule

__all__ = ["plot_samples", "plot_forward_process", "plot_schedules", "plot_trajectories", "plot_density",
           "density_grid"]

PANEL_SIZE = 3.5  # inches per panel of a new figure


# -- shared helpers ---------------------------------------------------------------------------
def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("anydiff.plot needs matplotlib: pip install matplotlib") from exc
    return plt


def _new_figure(n_panels: int, **subplots_kw):
    """A new figure with a row of ``n_panels`` axes: ``(figure, list of axes)``."""
    fig, axes = _pyplot().subplots(1, n_panels, figsize=(PANEL_SIZE * n_panels, PANEL_SIZE),
                                   squeeze=False, **subplots_kw)
    return fig, list(axes[0])


def _figure_and_axes(ax):
    """``(figure, axes)``: the given ``ax``, or the one axes of a new figure."""
    if ax is None:
        fig, (ax,) = _new_figure(1)
        return fig, ax
    if not hasattr(ax, "figure") or not hasattr(ax, "scatter"):
        raise ValueError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    return ax.figure, ax


def _to_numpy(x, name: str) -> np.ndarray:
    """A float64 numpy copy of an array or tensor, with no NaN."""
    if torch.is_tensor(x):
        x = x.detach().cpu().to(torch.float64).numpy()
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array or tensor, got {type(x).__name__}") from exc
    if np.isnan(x).any():
        raise ValueError(f"{name} contains NaN")
    return x


def _points(x, name: str) -> np.ndarray:
    """Validate 2-D points: float64 array of shape (n, 2), n >= 1."""
    x = _to_numpy(x, name)
    if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape (n, 2) with n >= 1 (2-D points), got {x.shape}")
    return x


def _interval(lim, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in lim)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a pair (low, high), got {lim!r}") from exc
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name}={lim!r} must be finite with low < high")
    return lo, hi


def _scatter(ax, x: np.ndarray, *, label: str, color: str, s: float, alpha: float):
    return ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, color=color, label=label, linewidths=0)


# -- plots ------------------------------------------------------------------------------------
def plot_samples(samples, data=None, *, ax=None, title: str | None = None, s: float = 2,
                 alpha: float = 0.5):
    """Scatter generated 2-D samples, optionally over the data, with equal aspect.

    Parameters
    ----------
    samples : array or tensor, shape (n, 2), drawn in orange ("samples").
    data : array or tensor, shape (m, 2), optional, drawn first in blue ("data").
    ax : matplotlib Axes, optional
    title : str, optional
    s, alpha : marker size and opacity.

    Returns
    -------
    matplotlib.figure.Figure
    """
    samples = _points(samples, "samples")
    data = None if data is None else _points(data, "data")
    fig, ax = _figure_and_axes(ax)
    if data is not None:
        _scatter(ax, data, label="data", color="tab:blue", s=s, alpha=alpha)
    _scatter(ax, samples, label="samples", color="tab:orange", s=s, alpha=alpha)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=max(1.0, 12.0 / max(s, 1e-3)))
    if title is not None:
        ax.set_title(title)
    return fig


def plot_forward_process(x0, schedule: Schedule, ts: Sequence[float] = (0, 0.25, 0.5, 0.75, 1.0), *,
                         generator: torch.Generator | None = None, s: float = 2, alpha: float = 0.5):
    """One panel per time t showing ``x_t = schedule.q_sample(x0, t)``, axes shared.

    Parameters
    ----------
    x0 : array or tensor, shape (n, 2), the data.
    schedule : anydiff.Schedule
    ts : sequence of times in [0, 1], one panel each; titles give t and alpha_t.
    generator : torch.Generator, optional, the noise source.
    s, alpha : marker size and opacity.

    Returns
    -------
    matplotlib.figure.Figure with ``len(ts)`` axes.
    """
    x0 = torch.from_numpy(_points(x0, "x0"))
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be an anydiff.Schedule, got {type(schedule).__name__}")
    ts = _to_numpy(ts, "ts")
    if ts.ndim != 1 or ts.size == 0 or not np.isfinite(ts).all() or (ts < 0).any() or (ts > 1).any():
        raise ValueError(f"ts must be a non-empty sequence of times in [0, 1], got {ts!r}")
    fig, axes = _new_figure(ts.size, sharex=True, sharey=True)
    for ax, t in zip(axes, ts):
        t_vec = torch.full((x0.shape[0],), float(t), dtype=torch.float64)
        x_t = schedule.q_sample(x0, t_vec, generator=generator)
        alpha_t = float(schedule.alpha_sigma(t_vec[:1])[0])
        _scatter(ax, x_t.numpy(), label=f"t = {t:.3g}", color="tab:blue", s=s, alpha=alpha)
        ax.set_title(f"t = {t:.3g}, alpha_t = {alpha_t:.3f}")
        ax.set_aspect("equal", adjustable="box")  # "datalim" is refused with shared axes
    return fig


def plot_schedules(schedules: Mapping[str, Schedule], *, resolution: int = 1001, log_snr_clip: float = 20.0):
    """Two panels, ``alpha_bar(t) = alpha_t**2`` and the log-SNR ``lambda_t``, against t in [0, 1].

    Parameters
    ----------
    schedules : mapping name -> anydiff.Schedule, e.g. ``{"linear": linear(), "cosine": cosine()}``;
        one line per schedule in each panel, labelled by its name.
    resolution : int >= 2, grid points in t.
    log_snr_clip : float > 0, the log-SNR is clipped to ``[-log_snr_clip, log_snr_clip]`` for
        display (it is +inf at t = 0, and -inf at t = 1 with zero terminal SNR).

    Returns
    -------
    matplotlib.figure.Figure with two axes.
    """
    if not isinstance(schedules, Mapping) or len(schedules) == 0:
        raise ValueError("schedules must be a non-empty dict name -> anydiff.Schedule")
    for name, schedule in schedules.items():
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedules[{name!r}] must be an anydiff.Schedule, got {type(schedule).__name__}")
    resolution = check_int(resolution, "resolution")
    if resolution < 2:
        raise ValueError(f"resolution={resolution} must be at least 2")
    if not (isinstance(log_snr_clip, numbers.Real) and math.isfinite(log_snr_clip) and log_snr_clip > 0):
        raise ValueError(f"log_snr_clip={log_snr_clip!r} must be a finite number > 0")
    t = torch.linspace(0, 1, resolution, dtype=torch.float64)
    fig, (ax_ab, ax_snr) = _new_figure(2)
    for name, schedule in schedules.items():
        alpha_t, _ = schedule.alpha_sigma(t)
        lam = schedule.log_snr(t).clamp(-log_snr_clip, log_snr_clip)
        ax_ab.plot(t.numpy(), (alpha_t**2).numpy(), label=str(name))
        ax_snr.plot(t.numpy(), lam.numpy(), label=str(name))
    ax_ab.set(xlabel="t", ylabel="alpha_bar(t)", title="signal level alpha_t^2")
    ax_snr.set(xlabel="t", ylabel="log-SNR", title=f"log-SNR (clipped to +-{log_snr_clip:g})")
    for ax in (ax_ab, ax_snr):
        ax.legend()
    return fig


def plot_trajectories(trajectory, *, ax=None, n_paths: int = 50, linewidth: float = 0.5,
                      alpha: float = 0.5):
    """Sampling paths in the plane: one thin line per path, its start and end points marked.

    Parameters
    ----------
    trajectory : array or tensor, shape (N + 1, B, 2), as returned by
        ``anydiff.sample(..., return_trajectory=True)``; row 0 is the start (noise when sampling).
    ax : matplotlib Axes, optional
    n_paths : int, positive; the first ``min(n_paths, B)`` paths are drawn.
    linewidth, alpha : of the lines.

    Returns
    -------
    matplotlib.figure.Figure; the axes get ``min(n_paths, B)`` lines and two scatter collections
    (start points as crosses, end points as dots).
    """
    trajectory = _to_numpy(trajectory, "trajectory")
    if trajectory.ndim != 3 or trajectory.shape[2] != 2 or trajectory.shape[0] < 1 or trajectory.shape[1] < 1:
        raise ValueError(f"trajectory must have shape (N + 1, B, 2), got {trajectory.shape}")
    paths = trajectory[:, : check_int(n_paths, "n_paths")]
    fig, ax = _figure_and_axes(ax)
    ax.plot(paths[..., 0], paths[..., 1], color="0.4", linewidth=linewidth, alpha=alpha)
    ax.scatter(paths[0, :, 0], paths[0, :, 1], marker="x", s=12, color="tab:blue", label="start")
    ax.scatter(paths[-1, :, 0], paths[-1, :, 1], marker="o", s=8, color="tab:red", label="end")
    ax.set_aspect("equal", adjustable="box")
    ax.legend(loc="upper right")
    return fig


def density_grid(xlim: tuple[float, float], ylim: tuple[float, float], resolution: int) -> np.ndarray:
    """Pixel centres of a ``resolution x resolution`` image covering ``xlim x ylim``.

    Returns
    -------
    ndarray, shape (resolution * resolution, 2), float64; point ``i * resolution + j`` is the
    centre of pixel ``[i, j]`` (row i from the bottom, column j from the left).
    """
    (x0, x1), (y0, y1) = _interval(xlim, "xlim"), _interval(ylim, "ylim")
    resolution = check_int(resolution, "resolution")
    centres = (np.arange(resolution) + 0.5) / resolution
    xs, ys = x0 + (x1 - x0) * centres, y0 + (y1 - y0) * centres
    gx, gy = np.meshgrid(xs, ys)  # gx[i, j] = xs[j], gy[i, j] = ys[i]
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def plot_density(log_prob: Callable[[np.ndarray], np.ndarray], *, xlim: tuple[float, float] = (-4, 4),
                 ylim: tuple[float, float] = (-4, 4), resolution: int = 100, ax=None, data=None,
                 log: bool = False, colorbar: bool = True, cmap: str = "viridis"):
    """Heat map of a 2-D density ``exp(log_prob)`` (or of ``log_prob`` itself with ``log=True``).

    Parameters
    ----------
    log_prob : callable, maps an (m, 2) float64 numpy array to (m,) log-densities (numpy or a
        tensor), e.g. ``est.score_samples`` or ``lambda x: gm.log_prob(torch.from_numpy(x))``.
        It is called once, on all ``resolution**2`` pixel centres (see :func:`density_grid`).
    xlim, ylim : (low, high), the extent of the image.
    resolution : int, pixels per side.
    ax : matplotlib Axes, optional
    data : array or tensor, shape (n, 2), optional, overlaid as small white points.
    log : bool, show log-densities (-inf is left blank) instead of densities.
    colorbar : bool, add a colour bar (an extra axes of the figure).
    cmap : str, matplotlib colour map.

    Returns
    -------
    matplotlib.figure.Figure; the image is ``ax.images[-1]``, array shape (resolution, resolution),
    origin at the lower left.
    """
    if not callable(log_prob):
        raise ValueError(f"log_prob must be a callable (m, 2) -> (m,), got {type(log_prob).__name__}")
    points = density_grid(xlim, ylim, resolution)
    data = None if data is None else _points(data, "data")
    values = _to_numpy(log_prob(points), "log_prob(points)")
    if values.shape != (points.shape[0],):
        raise ValueError(f"log_prob must return shape (m,) = ({points.shape[0]},) for (m, 2) points, "
                         f"got {values.shape}")
    if np.isposinf(values).any():
        raise ValueError("log_prob returned +inf")
    image = values if log else np.exp(values)
    image = np.ma.masked_invalid(image.reshape(resolution, resolution))
    fig, ax = _figure_and_axes(ax)
    im = ax.imshow(image, origin="lower", extent=(*_interval(xlim, "xlim"), *_interval(ylim, "ylim")),
                   cmap=cmap, interpolation="nearest", aspect="equal")
    if data is not None:
        ax.scatter(data[:, 0], data[:, 1], s=1, color="white", alpha=0.5, linewidths=0)
    if colorbar:
        fig.colorbar(im, ax=ax, label="log-density" if log else "density")
    return fig
