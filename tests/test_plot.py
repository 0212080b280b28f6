"""Plot helpers: what they draw, checked against the data and brute-force densities."""
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import anydiff as ad  # noqa: E402
from anydiff.datasets import checkerboard_log_prob, eight_gaussians_mixture  # noqa: E402
from anydiff.plot import (plot_density, plot_forward_process, plot_samples, plot_schedules,  # noqa: E402
                          plot_trajectories)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def gm():
    return eight_gaussians_mixture(0.3)


@pytest.fixture(scope="module")
def schedule():
    return ad.schedules.cosine(100)


@pytest.fixture(scope="module")
def trajectory(gm, schedule):
    _, traj = ad.sample(gm.model(schedule), (20, 2), schedule=schedule, steps=5, return_trajectory=True,
                        generator=torch.Generator().manual_seed(0))
    return traj


def points(n=60, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2))


def assert_renders(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def gm_log_prob(gm):
    return lambda x: gm.log_prob(torch.from_numpy(x))


# -- plot_samples --------------------------------------------------------------------------------
def test_plot_samples_against_data():
    samples, data = points(50, 0), points(80, 1)
    fig = plot_samples(torch.from_numpy(samples), data, title="ring")
    (ax,) = fig.axes
    assert [c.get_label() for c in ax.collections] == ["data", "samples"]
    np.testing.assert_allclose(ax.collections[0].get_offsets(), data)
    np.testing.assert_allclose(ax.collections[1].get_offsets(), samples)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["data", "samples"]
    assert ax.get_aspect() == 1.0 and ax.get_title() == "ring"
    assert_renders(fig)


def test_plot_samples_on_a_given_axes():
    fig, axes = plt.subplots(1, 2)
    assert plot_samples(points(), ax=axes[1]) is fig
    assert len(axes[1].collections) == 1 and len(axes[0].collections) == 0


# -- plot_forward_process --------------------------------------------------------------------------
def test_plot_forward_process_panels(schedule):
    x0 = points(40)
    ts = (0.0, 0.3, 1.0)
    fig = plot_forward_process(x0, schedule, ts, generator=torch.Generator().manual_seed(0))
    assert len(fig.axes) == 3
    for ax, t in zip(fig.axes, ts):
        alpha_t = float(schedule.alpha_sigma(torch.tensor([t], dtype=torch.float64))[0])
        assert ax.get_title() == f"t = {t:.3g}, alpha_t = {alpha_t:.3f}"
        assert len(ax.collections) == 1
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(), x0)  # t = 0: the data
    # the middle panel is q_sample with the generator's stream after the first panel's draw
    g = torch.Generator().manual_seed(0)
    x0_t = torch.from_numpy(x0)
    schedule.q_sample(x0_t, torch.zeros(40, dtype=torch.float64), generator=g)
    ref = schedule.q_sample(x0_t, torch.full((40,), 0.3, dtype=torch.float64), generator=g)
    np.testing.assert_allclose(fig.axes[1].collections[0].get_offsets(), ref.numpy())
    assert_renders(fig)


def test_plot_forward_process_default_times(schedule):
    assert len(plot_forward_process(torch.randn(10, 2), schedule).axes) == 5


# -- plot_schedules ----------------------------------------------------------------------------
def test_plot_schedules_lines():
    schedules = {"linear": ad.schedules.linear(100), "cosine": ad.schedules.cosine(100),
                 "zero-SNR": ad.schedules.linear(100, zero_terminal_snr=True)}
    fig = plot_schedules(schedules, resolution=101, log_snr_clip=15.0)
    ax_ab, ax_snr = fig.axes
    for ax in (ax_ab, ax_snr):
        assert [line.get_label() for line in ax.lines] == list(schedules)
    for line_ab, line_snr, s in zip(ax_ab.lines, ax_snr.lines, schedules.values()):
        np.testing.assert_allclose(line_ab.get_xdata(), np.arange(101) / 100, atol=1e-15)
        # the grid t = k / 100 hits the schedule's own table
        np.testing.assert_allclose(line_ab.get_ydata(), s.alpha_bars.numpy(), rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(line_snr.get_ydata(), np.clip(s.log_snrs.numpy(), -15, 15), rtol=1e-9)
        assert np.isfinite(line_snr.get_ydata()).all()
    assert ax_snr.lines[2].get_ydata()[-1] == -15.0  # -inf at t = 1 with zero terminal SNR, clipped
    assert_renders(fig)


# -- plot_trajectories ------------------------------------------------------------------------
def test_plot_trajectories_draws_n_paths(trajectory):
    assert trajectory.shape == (6, 20, 2)
    fig = plot_trajectories(trajectory, n_paths=7)
    (ax,) = fig.axes
    assert len(ax.lines) == 7
    traj = trajectory.numpy()
    for b, line in enumerate(ax.lines):
        np.testing.assert_allclose(np.stack([line.get_xdata(), line.get_ydata()], 1), traj[:, b], rtol=1e-6)
    start, end = ax.collections
    np.testing.assert_allclose(start.get_offsets(), traj[0, :7], rtol=1e-6)
    np.testing.assert_allclose(end.get_offsets(), traj[-1, :7], rtol=1e-6)
    assert_renders(fig)


def test_plot_trajectories_caps_n_paths_at_the_batch(trajectory):
    fig, ax = plt.subplots()
    assert plot_trajectories(trajectory.numpy(), ax=ax) is fig
    assert len(ax.lines) == 20


# -- plot_density ------------------------------------------------------------------------------
def test_plot_density_pixels_are_the_density(gm):
    calls = []

    def log_prob(x):
        calls.append(x.shape)
        assert x.dtype == np.float64
        return gm.log_prob(torch.from_numpy(x))

    xlim, ylim, res = (-3.0, 3.0), (-2.0, 4.0), 40
    fig = plot_density(log_prob, xlim=xlim, ylim=ylim, resolution=res, data=points(30))
    assert calls == [(res * res, 2)]  # one call on the whole grid
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the image and its colour bar
    (im,) = ax.images
    image = im.get_array()
    assert image.shape == (res, res)
    assert tuple(im.get_extent()) == (*xlim, *ylim) and im.origin == "lower"
    # brute force: pixel [i, j] is the density at its centre, row i from the bottom
    for i, j in [(0, 0), (5, 31), (39, 12), (res - 1, res - 1)]:
        x = xlim[0] + (j + 0.5) * (xlim[1] - xlim[0]) / res
        y = ylim[0] + (i + 0.5) * (ylim[1] - ylim[0]) / res
        ref = float(gm.log_prob(torch.tensor([[x, y]], dtype=torch.float64)).exp())
        assert image[i, j] == pytest.approx(ref, rel=1e-12, abs=1e-300)
    assert len(ax.collections) == 1  # the data overlay
    assert_renders(fig)


def test_plot_density_log_scale_and_empty_regions():
    fig = plot_density(checkerboard_log_prob, resolution=8, log=True, colorbar=False)
    assert len(fig.axes) == 1
    image = fig.axes[0].images[0].get_array()
    # 8 pixels per side over [-4, 4]: pixel [i, j] lies in cell (j // 2, i // 2)
    i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    black = (i // 2 + j // 2) % 2 == 0
    np.testing.assert_allclose(image[black], -np.log(32))
    assert image.mask[~black].all() and not image.mask[black].any()
    assert_renders(fig)


def test_plot_density_accepts_numpy_and_an_axes(gm):
    fig, ax = plt.subplots()
    out = plot_density(lambda x: gm_log_prob(gm)(x).numpy(), ax=ax, resolution=5)
    assert out is fig and ax.images[0].get_array().shape == (5, 5)


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("call, arg", [
    (lambda ctx: plot_samples(np.zeros((5, 3))), "samples"),
    (lambda ctx: plot_samples(np.zeros(5)), "samples"),
    (lambda ctx: plot_samples(np.array([[np.nan, 0.0]])), "samples"),
    (lambda ctx: plot_samples(np.zeros((5, 2)), data=np.zeros((5, 1))), "data"),
    (lambda ctx: plot_samples(np.zeros((5, 2)), ax="left"), "ax"),
    (lambda ctx: plot_forward_process(np.zeros((5, 3)), ctx["schedule"]), "x0"),
    (lambda ctx: plot_forward_process(np.zeros((5, 2)), "cosine"), "schedule"),
    (lambda ctx: plot_forward_process(np.zeros((5, 2)), ctx["schedule"], ts=(0.5, 1.5)), "ts"),
    (lambda ctx: plot_forward_process(np.zeros((5, 2)), ctx["schedule"], ts=()), "ts"),
    (lambda ctx: plot_schedules({}), "schedules"),
    (lambda ctx: plot_schedules({"a": 3}), "schedules"),
    (lambda ctx: plot_schedules({"a": ctx["schedule"]}, resolution=1), "resolution"),
    (lambda ctx: plot_schedules({"a": ctx["schedule"]}, log_snr_clip=float("inf")), "log_snr_clip"),
    (lambda ctx: plot_trajectories(np.zeros((5, 2))), "trajectory"),
    (lambda ctx: plot_trajectories(np.zeros((5, 4, 3))), "trajectory"),
    (lambda ctx: plot_trajectories(np.zeros((5, 4, 2)), n_paths=0), "n_paths"),
    (lambda ctx: plot_density("gm"), "log_prob"),
    (lambda ctx: plot_density(lambda x: np.zeros((len(x), 1))), "log_prob"),
    (lambda ctx: plot_density(lambda x: np.full(len(x), np.inf)), "log_prob"),
    (lambda ctx: plot_density(lambda x: np.zeros(len(x)), xlim=(1, -1)), "xlim"),
    (lambda ctx: plot_density(lambda x: np.zeros(len(x)), ylim=(0, np.nan)), "ylim"),
    (lambda ctx: plot_density(lambda x: np.zeros(len(x)), resolution=0), "resolution"),
    (lambda ctx: plot_density(lambda x: np.zeros(len(x)), data=np.zeros((3, 3))), "data"),
])
def test_bad_input(call, arg, schedule):
    with pytest.raises(ValueError, match=rf"^{arg}\b"):  # the message starts with the argument's name
        call({"schedule": schedule})
