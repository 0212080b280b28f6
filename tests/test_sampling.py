"""Samplers against exact references: the closed-form Gaussian-mixture denoiser, brute-force
re-runs, and identities between samplers."""
import math

import numpy as np
import pytest
import torch

import anydiff as ad
from anydiff.sampling import SAMPLERS, model_evaluations

SCHED = ad.schedules.cosine(1000)
# a 2-D mixture with unequal weights: mean, covariance and mode weights are all checked
GM = ad.oracles.GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [0.5, 1.0])
MEAN = (GM.weights[:, None] * GM.means).sum(0)
COV = sum(w * (c + torch.outer(m - MEAN, m - MEAN)) for w, m, c in zip(GM.weights, GM.means, GM.covs))


def distribution_error(x: torch.Tensor) -> float:
    """Largest error of the mean, covariance and mode weights against the mixture's closed form."""
    x = x.double()
    mean_err = (x.mean(0) - MEAN).abs().max()
    cov_err = (torch.cov(x.T) - COV).abs().max() / COV.abs().max()
    weight_err = (GM.responsibilities(x).mean(0) - GM.weights).abs().max()
    return float(max(mean_err, cov_err, weight_err))


def run(sampler, steps, n=20000, seed=0, **kw):
    return ad.sample(GM.model(SCHED), (n, 2), schedule=SCHED, sampler=sampler, steps=steps,
                     generator=torch.Generator().manual_seed(seed), **kw)


# sampler, grid, extra options, (few steps, many steps), tolerance at many steps. With n = 20000
# the standard error of the mean is 2.03 / sqrt(n) = 0.014, so 0.06 is about four of them.
CONVERGENCE = [
    ("ddpm", "trailing", {}, (10, 250), 0.06),
    ("ddim", "trailing", {}, (5, 100), 0.06),
    ("euler", "trailing", {}, (5, 100), 0.06),
    ("heun", "karras", {}, (3, 30), 0.06),
    ("dpmpp_2m", "logsnr", {}, (3, 20), 0.06),
    ("dpmpp_2m", "trailing", {}, (3, 50), 0.06),
    ("dpmpp_2m_sde", "trailing", {}, (5, 20), 0.06),
    ("dpmpp_2m_sde", "logsnr", {}, (5, 50), 0.06),
    ("euler_maruyama", "trailing", {}, (20, 500), 0.06),
    ("pc", "trailing", {}, (10, 250), 0.06),
    ("langevin", "trailing", {}, (20, 300), 0.07),
]


@pytest.mark.parametrize("sampler,grid,kw,steps,tol", CONVERGENCE, ids=[f"{c[0]}-{c[1]}" for c in CONVERGENCE])
def test_sampler_reproduces_mixture(sampler, grid, kw, steps, tol):
    """With the exact denoiser every sampler reproduces the data distribution, and its error
    shrinks as steps grow (the same seed for both runs)."""
    few, many = (distribution_error(run(sampler, n, timesteps=grid, **kw)) for n in steps)
    assert many < tol, f"{sampler}: error {many:.3f} at {steps[1]} steps"
    assert many < few, f"{sampler}: error did not shrink ({few:.3f} -> {many:.3f})"


@pytest.mark.gpu
@pytest.mark.parametrize("sampler,grid,kw,steps,tol", CONVERGENCE, ids=[f"{c[0]}-{c[1]}" for c in CONVERGENCE])
def test_sampler_reproduces_mixture_on_cuda(sampler, grid, kw, steps, tol):
    """The same references on a GPU, with noise from a CUDA generator; and with a CPU generator
    the GPU run draws the same noise as the CPU run, so both give the same samples up to float
    rounding (the mixture's denoiser is smooth, so rounding does not grow along the path)."""
    x = ad.sample(GM.model(SCHED), (20000, 2), schedule=SCHED, sampler=sampler, steps=steps[1], timesteps=grid,
                  generator=torch.Generator("cuda").manual_seed(0), device="cuda", **kw)
    assert x.device.type == "cuda"
    assert distribution_error(x.cpu()) < tol
    on_gpu = ad.sample(GM.model(SCHED), (2000, 2), schedule=SCHED, sampler=sampler, steps=steps[0], timesteps=grid,
                       generator=torch.Generator().manual_seed(0), device="cuda", **kw)
    torch.testing.assert_close(on_gpu.cpu(), run(sampler, steps[0], n=2000, timesteps=grid, **kw),
                               rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("prediction", ["x0", "v", "score"])
@pytest.mark.parametrize("sampler", ["ddim", "heun", "dpmpp_2m", "dpmpp_2m_sde", "ddpm"])
def test_prediction_types_agree(sampler, prediction):
    """The same exact model in any parameterization gives the same samples (float64)."""
    kw = dict(schedule=SCHED, sampler=sampler, steps=8, dtype=torch.float64)
    ref = ad.sample(GM.model(SCHED, "eps"), (64, 2), generator=torch.Generator().manual_seed(0), **kw)
    out = ad.sample(GM.model(SCHED, prediction), (64, 2), prediction=prediction,
                    generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("event_shape", [(5,), (4, 3), (2, 3, 2)])
def test_any_event_shape(event_shape):
    """Point sets and poses sample exactly like flat vectors of the same numbers."""
    D = int(torch.tensor(event_shape).prod())
    means = torch.randn(2, D, generator=torch.Generator().manual_seed(1))
    flat = ad.oracles.GaussianMixture([0.4, 0.6], means, [0.3, 0.6])
    shaped = ad.oracles.GaussianMixture([0.4, 0.6], means.reshape(2, *event_shape), [0.3, 0.6])
    for sampler in ("ddpm", "dpmpp_2m", "pc"):
        a = ad.sample(flat.model(SCHED), (16, D), schedule=SCHED, sampler=sampler, steps=6,
                      generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        b = ad.sample(shaped.model(SCHED), (16, *event_shape), schedule=SCHED, sampler=sampler, steps=6,
                      generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        assert b.shape == (16, *event_shape)
        torch.testing.assert_close(b.reshape(16, D), a)


def test_euler_is_ddim_with_eta_zero():
    x_T = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = ad.sample(GM.model(SCHED), (256, 2), schedule=SCHED, sampler="euler", steps=10, x_T=x_T)
    b = ad.sample(GM.model(SCHED), (256, 2), schedule=SCHED, sampler="ddim", steps=10, x_T=x_T)
    torch.testing.assert_close(a, b)


def test_ddim_eta_one_is_ddpm():
    """DDIM with eta=1 samples the DDPM posterior (Song et al. 2021, sec. 4.1)."""
    a = run("ddim", 10, n=256, eta=1.0, dtype=torch.float64)
    b = run("ddpm", 10, n=256, dtype=torch.float64)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_dpmpp_2m_sde_first_order_step_is_ddpm():
    """Without history (its first step; the step to t = 0) SDE-DPM-Solver++(2M) is the exact
    solution of the reverse SDE for a constant x0_hat: the DDPM posterior draw, noise included."""
    a = run("dpmpp_2m_sde", 2, n=256, dtype=torch.float64)
    b = run("ddpm", 2, n=256, dtype=torch.float64)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_dpmpp_2m_sde_second_order_beats_ddpm():
    """The multistep term pays: at 20 steps its error is a fraction of the ancestral sampler's
    on the same grid and noise seed."""
    sde, anc = (distribution_error(run(s, 20)) for s in ("dpmpp_2m_sde", "ddpm"))
    assert sde < anc / 3, (sde, anc)


def test_ddim_intermediate_eta_interpolates_noise():
    """With the same starting noise, 0 < eta < 1 differs from both ends and stays a valid sampler."""
    x = run("ddim", 50, eta=0.5)
    assert distribution_error(x) < 0.06


@pytest.mark.parametrize("sampler,order", [("ddim", 1), ("heun", 2)])
def test_deterministic_and_invertible(sampler, order):
    """Encoding then decoding returns the data up to discretization error, which falls like
    steps^-order: 10x the steps cut it by ~10x for DDIM (first order), ~100x for Heun."""
    x0 = GM.sample(2000, torch.Generator().manual_seed(5), dtype=torch.float64)
    errors = []
    for steps in (10, 100):
        z = ad.encode(GM.model(SCHED), x0, schedule=SCHED, steps=steps, sampler=sampler)
        z2 = ad.encode(GM.model(SCHED), x0, schedule=SCHED, steps=steps, sampler=sampler)
        torch.testing.assert_close(z, z2, rtol=0, atol=0)
        back = ad.sample(GM.model(SCHED), tuple(x0.shape), schedule=SCHED, sampler=sampler,
                         steps=steps, x_T=z, generator=torch.Generator().manual_seed(9))
        errors.append(float((back - x0).abs().median()))
    assert errors[1] < errors[0] / (5 if order == 1 else 30), errors
    assert errors[1] < (0.04 if order == 1 else 0.002), errors
    # the encoding is Gaussian noise: N(0, I) moments
    torch.testing.assert_close(z.mean(0), torch.zeros(2, dtype=torch.float64), atol=0.1, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), torch.eye(2, dtype=torch.float64), atol=0.12, rtol=0)


@pytest.mark.parametrize("sampler", ["ddim", "heun", "dpmpp_2m", "ddpm", "pc"])
def test_per_sample_time_grids(sampler):
    """A (N+1, B) grid gives each sample its own times: the same as sampling one at a time."""
    B, N = 4, 6
    starts = torch.tensor([1.0, 0.8, 0.5, 0.3], dtype=torch.float64)
    grids = torch.stack([torch.linspace(float(s), 0.0, N + 1, dtype=torch.float64) for s in starts], 1)
    x_T = torch.randn(B, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # stochastic samplers draw one batch of noise per step; rerun each sample with its own slice
    together = ad.sample(GM.model(SCHED), (B, 2), schedule=SCHED, sampler=sampler, timesteps=grids, x_T=x_T)
    if sampler in ("ddpm", "pc"):
        assert torch.isfinite(together).all()
        return
    for b in range(B):
        alone = ad.sample(GM.model(SCHED), (1, 2), schedule=SCHED, sampler=sampler,
                          timesteps=grids[:, b], x_T=x_T[b : b + 1])
        torch.testing.assert_close(together[b : b + 1], alone)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_zero_terminal_snr_stays_finite(sampler):
    s = ad.schedules.linear(1000, zero_terminal_snr=True)
    assert s.zero_terminal_snr
    x = ad.sample(GM.model(s, "v"), (4000, 2), schedule=s, sampler=sampler, steps=40, prediction="v",
                  timesteps="karras" if sampler == "heun" else "trailing",
                  generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
    if sampler != "langevin":
        assert (x.double().mean(0) - MEAN).abs().max() < 0.25


def test_zero_terminal_snr_rejects_eps_prediction():
    s = ad.schedules.linear(100, zero_terminal_snr=True)
    with pytest.raises(ValueError, match="prediction"):
        ad.sample(GM.model(s), (4, 2), schedule=s, steps=5)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("grid", ["trailing", "logsnr", "karras"])
def test_model_evaluations_counts_calls(sampler, grid):
    calls = []

    def counting(x, t, cond=None):
        calls.append(1)
        return GM.model(SCHED)(x, t)

    for steps in (1, 2, 7):
        calls.clear()
        ad.sample(counting, (3, 2), schedule=SCHED, sampler=sampler, steps=steps, timesteps=grid,
                  corrector_steps=2, generator=torch.Generator().manual_seed(0))
        assert len(calls) == model_evaluations(sampler, steps, schedule=SCHED, timesteps=grid, corrector_steps=2)


def test_time_grids_start_at_one_and_end_at_zero():
    for grid in ("trailing", "logsnr", "karras"):
        for s in (SCHED, ad.schedules.linear(1000, zero_terminal_snr=True)):
            ts = ad.timesteps.make_timesteps(s, 10, grid)[:, 0]
            assert ts.shape == (11,) and ts[0] == 1.0 and ts[-1] == 0.0
            assert (ts[1:] < ts[:-1]).all()
    lam = SCHED.log_snr(ad.timesteps.make_timesteps(SCHED, 10, "logsnr")[1:-1, 0])
    diffs = lam[1:] - lam[:-1]
    torch.testing.assert_close(diffs, diffs.mean().expand_as(diffs))
    # trailing on a T divisible by steps lands on the discrete grid: DDPM strides it
    ts = ad.timesteps.make_timesteps(SCHED, 10, "trailing")[:, 0]
    torch.testing.assert_close(ts * 1000, (ts * 1000).round())


class ClassOracle:
    """Two classes, each a Gaussian; cond=None is their 50/50 mixture (what label dropout learns)."""

    def __init__(self):
        self.parts = [ad.oracles.GaussianMixture([1.0], [[-2.0, 0.0]], [0.5]),
                      ad.oracles.GaussianMixture([1.0], [[2.0, 0.0]], [0.5])]
        self.both = ad.oracles.GaussianMixture([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], [0.5, 0.5])

    def __call__(self, x, t, cond=None):
        if cond is None:
            return self.both.model(SCHED)(x, t)
        out = torch.empty_like(x)
        for label, part in enumerate(self.parts):
            idx = cond == label
            out[idx] = part.model(SCHED)(x[idx], t[idx])
        return out


def test_classifier_free_guidance_identities():
    model, B = ClassOracle(), 512
    cond = torch.tensor([0, 1]).repeat(B // 2)
    kw = dict(schedule=SCHED, sampler="dpmpp_2m", steps=15, timesteps="logsnr")
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    plain = ad.sample(model, (B, 2), cond=cond, generator=g(), **kw)
    scale_one = ad.sample(model, (B, 2), cond=cond, guidance_scale=1.0, generator=g(), **kw)
    uncond = ad.sample(model, (B, 2), generator=g(), **kw)
    scale_zero = ad.sample(model, (B, 2), cond=cond, guidance_scale=0.0, generator=g(), **kw)
    torch.testing.assert_close(scale_one, plain)
    torch.testing.assert_close(scale_zero, uncond)
    # conditional samples land in their class; strong guidance pushes further out
    assert (plain[cond == 0, 0] < 0).float().mean() > 0.99 and (plain[cond == 1, 0] > 0).float().mean() > 0.99
    strong = ad.sample(model, (B, 2), cond=cond, guidance_scale=3.0, generator=g(), **kw)
    assert strong[cond == 1, 0].mean() > plain[cond == 1, 0].mean()


def test_inpainting_keeps_known_and_repaint_improves_the_conditional():
    """Correlated Gaussian: x1 | x0 = c is N(mu1 + rho (c - mu0), 1 - rho^2). Replacement keeps
    the known part exactly; RePaint resampling brings the conditional closer to the truth."""
    rho, c, n = 0.8, 1.5, 4000
    gm = ad.oracles.GaussianMixture([1.0], [[0.5, -0.5]], torch.tensor([[[1.0, rho], [rho, 1.0]]]))
    known = torch.full((n, 2), float("nan"))
    known[:, 0] = c
    mask = torch.tensor([1.0, 0.0])
    target_mean, target_std = -0.5 + rho * (c - 0.5), (1 - rho**2) ** 0.5

    def error(resample):
        x = ad.sample(gm.model(SCHED), (n, 2), schedule=SCHED, sampler="ddpm", steps=50, known=known,
                      mask=mask, resample=resample, generator=torch.Generator().manual_seed(0))
        assert (x[:, 0] == c).all() and torch.isfinite(x).all()
        return abs(float(x[:, 1].mean()) - target_mean) + abs(float(x[:, 1].std()) / target_std - 1)

    plain, repaint = error(1), error(10)
    assert repaint < plain / 2 and repaint < 0.15, (plain, repaint)


def test_trajectory_and_reproducibility():
    x, traj = run("ddpm", 5, n=8, return_trajectory=True)
    assert traj.shape == (6, 8, 2)
    torch.testing.assert_close(traj[-1], x)
    torch.testing.assert_close(x, run("ddpm", 5, n=8))
    assert not torch.equal(x, run("ddpm", 5, n=8, seed=1))
    x_T = torch.randn(8, 2)
    _, traj = ad.sample(GM.model(SCHED), (8, 2), schedule=SCHED, steps=3, x_T=x_T, return_trajectory=True)
    torch.testing.assert_close(traj[0], x_T)


def test_progress_bar(capsys):
    x = run("ddim", 3, n=4, progress=True)
    assert x.shape == (4, 2)


def test_no_x0_clipping_by_default():
    """Data far outside [-1, 1] are reproduced: nothing clips x0 (diffusers does by default)."""
    far = ad.oracles.GaussianMixture([1.0], [[50.0, -30.0]], [2.0])
    x = ad.sample(far.model(SCHED), (2000, 2), schedule=SCHED, steps=20, timesteps="logsnr",
                  generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.double().mean(0), torch.tensor([50.0, -30.0], dtype=torch.float64), atol=0.2, rtol=0)
    clipped = ad.sample(far.model(SCHED), (20, 2), schedule=SCHED, steps=20, clip_x0=1.0,
                        generator=torch.Generator().manual_seed(0))
    assert clipped.abs().max() <= 1.0 + 1e-5


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddpm", "heun"])
def test_per_feature_x0_bounds(sampler):
    """A pair (low, high) clamps each feature to its own range; inside the range nothing changes."""
    far = ad.oracles.GaussianMixture([1.0], [[50.0, -30.0]], [2.0])
    low, high = np.array([-1.0, -40.0]), np.array([2.0, 40.0])
    kw = dict(schedule=SCHED, sampler=sampler, steps=20, timesteps="logsnr")
    x = ad.sample(far.model(SCHED), (500, 2), clip_x0=(low, high), generator=torch.Generator().manual_seed(0), **kw)
    assert float(x[:, 0].max()) <= 2.0 + 1e-4 and float(x[:, 0].min()) >= -1.0 - 1e-4
    # the second feature's range holds the data: it still follows N(-30, 2)
    assert abs(float(x[:, 1].double().mean()) + 30.0) < 4 * math.sqrt(2.0 / 500) + 0.1
    wide = ad.sample(far.model(SCHED), (500, 2), clip_x0=(-1e3, 1e3), generator=torch.Generator().manual_seed(0), **kw)
    free = ad.sample(far.model(SCHED), (500, 2), generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(wide, free)


@pytest.mark.parametrize("kwargs,match", [
    (dict(sampler="plms"), "sampler"),
    (dict(prediction="noise"), "prediction"),
    (dict(steps=0), "steps"),
    (dict(timesteps="cosine"), "timesteps"),
    (dict(timesteps=torch.tensor([1.0, 1.5, 0.0])), "timesteps"),
    (dict(timesteps=torch.tensor([1.0, 0.5, 0.7, 0.0])), "timesteps"),
    (dict(eta=0.5, sampler="ddpm"), "eta"),
    (dict(eta=2.0, sampler="ddim"), "eta"),
    (dict(guidance_scale=2.0), "cond"),
    (dict(known=torch.zeros(4, 2)), "mask"),
    (dict(known=torch.zeros(4, 3), mask=torch.ones(4, 3)), "known"),
    (dict(known=torch.zeros(4, 2), mask=torch.ones(3)), "mask"),
    (dict(known=torch.zeros(4, 2), mask=torch.full((4, 2), 0.5)), "mask"),
    (dict(known=torch.full((4, 2), float("nan")), mask=torch.ones(4, 2)), "known"),
    (dict(x_T=torch.full((4, 2), float("nan"))), "x_T"),
    (dict(x_T=torch.zeros(4, 3)), "x_T"),
    (dict(resample=3), "resample"),
    (dict(timesteps=torch.linspace(0, 1, 5), sampler="ddpm"), "deterministic"),
    (dict(clip_x0=-1.0), "clip_x0"),
    (dict(clip_x0=True), "clip_x0"),
    (dict(clip_x0=(1.0, 0.0)), "clip_x0"),
    (dict(clip_x0=([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])), "clip_x0"),
    (dict(clip_x0=(torch.zeros(4, 2), torch.ones(4, 2))), "clip_x0"),
    (dict(clip_x0=(torch.zeros(2, 1), torch.ones(2))), "clip_x0"),
    (dict(clip_x0=("low", "high")), "clip_x0"),
    (dict(clip_x0=([float("nan"), 0.0], [1.0, 1.0])), "clip_x0"),
])
def test_bad_input_names_the_argument(kwargs, match):
    args = dict(schedule=SCHED, steps=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ad.sample(GM.model(SCHED), (4, 2), **args)


def test_bad_model_output_and_shape():
    with pytest.raises(ValueError, match="model output"):
        ad.sample(lambda x, t, cond=None: x[:, :1], (4, 2), schedule=SCHED, steps=2)
    with pytest.raises(ValueError, match="shape"):
        ad.sample(GM.model(SCHED), (4,), schedule=SCHED, steps=2)
    with pytest.raises(ValueError, match="schedule"):
        ad.sample(GM.model(SCHED), (4, 2), schedule="cosine", steps=2)
