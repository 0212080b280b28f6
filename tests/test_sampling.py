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
    ("dpmpp_3m", "logsnr", {}, (3, 20), 0.06),
    ("dpmpp_3m", "trailing", {}, (5, 20), 0.06),
    ("unipc", "logsnr", {}, (3, 20), 0.06),
    ("unipc", "trailing", {}, (5, 20), 0.06),
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


# --------------------------------------------------------------------------------------------
# Higher-order multistep solvers: DPM-Solver++(3M) and UniPC
# --------------------------------------------------------------------------------------------

# Gaussian data N(m, diag(s^2)): the probability-flow ODE is affine and keeps each coordinate's
# standardized value (x_t - alpha_t m) / S_t, S_t = sqrt(alpha_t^2 s^2 + sigma_t^2), so its exact
# solution from x_T is x_t = alpha_t m + S_t / S_T (x_T - alpha_T m).
G_MEAN = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
G_STD = torch.tensor([0.5, 1.5, 0.1], dtype=torch.float64)
GAUSS = ad.oracles.GaussianMixture([1.0], G_MEAN[None], torch.diag(G_STD**2)[None])


def exact_flow(x_T, t_from, t_to):
    """The closed-form probability-flow map of GAUSS from time t_from to t_to."""
    (a_T, s_T), (a, s) = (SCHED.alpha_sigma(torch.tensor(float(u), dtype=torch.float64)) for u in (t_from, t_to))
    S_T, S = (a_T**2 * G_STD**2 + s_T**2).sqrt(), (a**2 * G_STD**2 + s**2).sqrt()
    return a * G_MEAN + S / S_T * (x_T - a_T * G_MEAN)


def lambda_grid(steps, log_snr_from=-16.0, log_snr_to=8.0):
    """Times uniform in log-SNR, from t ~ 0.99 down to t_min ~ 0.03 (sigma ~ 0.02)."""
    return SCHED.t_of_log_snr(torch.linspace(log_snr_from, log_snr_to, steps + 1, dtype=torch.float64))


def test_gaussian_flow_closed_form_solves_the_ode():
    """The reference itself: along the closed-form path, d(x/alpha)/d(sigma/alpha) equals the exact
    denoiser's eps (the probability-flow ODE in Karras et al.'s variables), by finite differences."""
    x_T = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    den = ad.sampling.Denoiser(GAUSS.model(SCHED), SCHED)
    for t in (0.2, 0.5, 0.8):
        lam = float(SCHED.log_snr(torch.tensor(t, dtype=torch.float64)))
        t_lo, t_hi = SCHED.t_of_log_snr(torch.tensor([lam + 1e-4, lam - 1e-4], dtype=torch.float64))
        pts = []
        for u in (t_lo, t_hi):
            a, s = SCHED.alpha_sigma(u)
            pts.append((exact_flow(x_T, 1.0, u) / a, s / a))
        slope = (pts[1][0] - pts[0][0]) / (pts[1][1] - pts[0][1])
        tt = torch.full((8,), t, dtype=torch.float64)
        _, eps = den(exact_flow(x_T, 1.0, tt[0]), tt)
        torch.testing.assert_close(slope, eps, rtol=1e-6, atol=1e-6)


def flow_errors(sampler, steps_list):
    x_T = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = []
    for steps in steps_list:
        ts = lambda_grid(steps)
        x = ad.sample(GAUSS.model(SCHED), (64, 3), schedule=SCHED, sampler=sampler, timesteps=ts, x_T=x_T)
        ref = exact_flow(x_T, ts[0], ts[-1])
        errors.append(float((x - ref).norm() / (ref - G_MEAN).norm()))
    return errors


def test_third_order_multistep_solvers_converge_faster():
    """Against the exact flow of Gaussian data (float64, times uniform in log-SNR, 20 -> 80 steps):
    DPM-Solver++(2M)'s error falls like steps^-2, DPM-Solver++(3M)'s and UniPC's at least like
    steps^-2.5 (third order; UniPC's corrector makes it fourth), and already at 20 steps they are
    well below DPM-Solver++(2M)'s."""
    steps = (20, 40, 80)
    errors = {s: flow_errors(s, steps) for s in ("dpmpp_2m", "dpmpp_3m", "unipc")}

    def slope(e):
        return math.log(e[0] / e[-1]) / math.log(steps[-1] / steps[0])

    assert 1.7 < slope(errors["dpmpp_2m"]) < 2.2, errors
    for sampler in ("dpmpp_3m", "unipc"):
        assert slope(errors[sampler]) > 2.5, (sampler, errors)
        assert errors[sampler][0] < errors["dpmpp_2m"][0] / 2, (sampler, errors)
    assert errors["dpmpp_3m"][-1] < 1e-4 and errors["unipc"][-1] < 1e-4, errors


def test_exp_moments_match_quadrature():
    """beta_k(h) = (k!/h^k) int_0^h e^{-(h-u)} u^k / k! du, the coefficients both solvers build on,
    against the trapezoid rule on a fine grid (series below h = 1, recursion above)."""
    from anydiff.sampling import _exp_moments

    h = torch.tensor([1e-3, 0.3, 0.999, 1.001, 3.0, 20.0], dtype=torch.float64)
    got = _exp_moments(h, 3)
    for i, hi in enumerate(h.tolist()):
        u = torch.linspace(0, hi, 200001, dtype=torch.float64)
        for k in (1, 2, 3):
            ref = torch.trapezoid(torch.exp(-(hi - u)) * u**k, u) / hi**k
            assert abs(float(got[i, k - 1]) - float(ref)) < 1e-8 * max(1.0, float(ref) / hi), (hi, k)


def test_dpmpp_3m_warm_up_and_final_steps_are_dpmpp_2m():
    """With three steps to t = 0 DPM-Solver++(3M) never reaches third order: step one is first
    order, step two second order (DPM-Solver++(2M)'s), and the step to t = 0 first order."""
    kw = dict(schedule=SCHED, dtype=torch.float64, timesteps="logsnr")
    for steps in (1, 2, 3):
        a = ad.sample(GM.model(SCHED), (64, 2), sampler="dpmpp_3m", steps=steps, generator=torch.Generator().manual_seed(0), **kw)
        b = ad.sample(GM.model(SCHED), (64, 2), sampler="dpmpp_2m", steps=steps, generator=torch.Generator().manual_seed(0), **kw)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    a, b = (ad.sample(GM.model(SCHED), (64, 2), sampler=s, steps=6, generator=torch.Generator().manual_seed(0), **kw)
            for s in ("dpmpp_3m", "dpmpp_2m"))
    assert not torch.allclose(a, b)


class Counting:
    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x, t, cond=None):
        self.calls += 1
        return self.model(x, t, cond)


@pytest.mark.parametrize("sampler", ["dpmpp_3m", "unipc"])
def test_multistep_one_evaluation_per_step(sampler):
    """UniPC's corrector reuses the next step's evaluation: both solvers call the model once per
    step (twice with guidance), as model_evaluations says, on every grid."""
    for steps in (1, 2, 3, 4, 7, 16):
        for grid in ("trailing", "logsnr"):
            model = Counting(GM.model(SCHED))
            ad.sample(model, (3, 2), schedule=SCHED, sampler=sampler, steps=steps, timesteps=grid,
                      generator=torch.Generator().manual_seed(0))
            assert model.calls == steps == model_evaluations(sampler, steps, schedule=SCHED, timesteps=grid)
    model = Counting(ClassOracle())
    ad.sample(model, (4, 2), schedule=SCHED, sampler=sampler, steps=5, cond=torch.tensor([0, 1, 0, 1]),
              guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert model.calls == 10 == model_evaluations(sampler, 5, schedule=SCHED, guidance=True)


@pytest.mark.parametrize("sampler", ["dpmpp_3m", "unipc"])
def test_multistep_reproducible_and_guided(sampler):
    """Same seed, same samples; guidance with w = 1 is the conditional model, w = 0 the
    unconditional one (the guidance identities of the other samplers)."""
    x = run(sampler, 8, n=64)
    torch.testing.assert_close(x, run(sampler, 8, n=64), rtol=0, atol=0)
    assert not torch.equal(x, run(sampler, 8, n=64, seed=1))
    model, cond = ClassOracle(), torch.tensor([0, 1]).repeat(128)
    kw = dict(schedule=SCHED, sampler=sampler, steps=10, timesteps="logsnr", dtype=torch.float64)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    plain = ad.sample(model, (256, 2), cond=cond, generator=g(), **kw)
    torch.testing.assert_close(ad.sample(model, (256, 2), cond=cond, guidance_scale=1.0, generator=g(), **kw), plain)
    torch.testing.assert_close(ad.sample(model, (256, 2), cond=cond, guidance_scale=0.0, generator=g(), **kw),
                               ad.sample(model, (256, 2), generator=g(), **kw))
    assert (plain[cond == 0, 0] < 0).float().mean() > 0.99 and (plain[cond == 1, 0] > 0).float().mean() > 0.99


@pytest.mark.parametrize("sampler", ["dpmpp_3m", "unipc"])
def test_multistep_prediction_types_and_per_sample_grids(sampler):
    """Any parameterization of the exact model gives the same samples; a (N+1, B) grid gives
    each sample its own orders and weights, the same as sampling it alone."""
    kw = dict(schedule=SCHED, sampler=sampler, steps=8, dtype=torch.float64)
    ref = ad.sample(GM.model(SCHED, "eps"), (64, 2), generator=torch.Generator().manual_seed(0), **kw)
    for prediction in ("x0", "v"):
        out = ad.sample(GM.model(SCHED, prediction), (64, 2), prediction=prediction,
                        generator=torch.Generator().manual_seed(0), **kw)
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    B, N = 4, 7
    grids = torch.stack([torch.linspace(s, 0.0, N + 1, dtype=torch.float64) ** p
                         for s, p in ((1.0, 1.0), (0.8, 2.0), (0.5, 1.0), (1.0, 3.0))], 1)
    x_T = torch.randn(B, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    together = ad.sample(GM.model(SCHED), (B, 2), schedule=SCHED, sampler=sampler, timesteps=grids, x_T=x_T)
    for b in range(B):
        alone = ad.sample(GM.model(SCHED), (1, 2), schedule=SCHED, sampler=sampler, timesteps=grids[:, b],
                          x_T=x_T[b : b + 1])
        torch.testing.assert_close(together[b : b + 1], alone, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sampler", ["dpmpp_3m", "unipc"])
def test_multistep_inpainting_and_repaint(sampler):
    """Correlated Gaussian, x1 | x0 = c ~ N(mu1 + rho (c - mu0), 1 - rho^2): replacement keeps the
    known part exactly, with and without RePaint; RePaint repeats restart the multistep method
    (x is re-noised off the path of the stored predictions), so they stay stable and bring the
    conditional much closer to the truth."""
    rho, c, n = 0.8, 1.5, 2000
    gm = ad.oracles.GaussianMixture([1.0], [[0.5, -0.5]], torch.tensor([[[1.0, rho], [rho, 1.0]]]))
    known = torch.full((n, 2), float("nan"))
    known[:, 0] = c
    target_mean, target_std = -0.5 + rho * (c - 0.5), (1 - rho**2) ** 0.5

    def error(resample):
        x = ad.sample(gm.model(SCHED), (n, 2), schedule=SCHED, sampler=sampler, steps=20, known=known,
                      mask=torch.tensor([1.0, 0.0]), resample=resample, generator=torch.Generator().manual_seed(0))
        assert (x[:, 0] == c).all() and torch.isfinite(x).all()
        return abs(float(x[:, 1].mean()) - target_mean) + abs(float(x[:, 1].std()) / target_std - 1)

    plain, repaint = error(1), error(10)
    assert repaint < plain / 2 and repaint < 0.3, (plain, repaint)


def test_dpmpp_3m_step_is_the_integrated_quadratic():
    """One third-order step against its closed form: the quadratic through the last three data
    predictions in lambda, integrated exactly: x' = (sigma'/sigma) x + alpha' (g1 m0 + g2 d1 + 2 g3 d2)."""
    from anydiff.sampling import StepState, dpmpp_3m

    gen = torch.Generator().manual_seed(0)
    m0, m1, m2, x = (torch.randn(5, 2, generator=gen, dtype=torch.float64) for _ in range(4))
    t_grid = torch.tensor([0.7, 0.55, 0.4, 0.3], dtype=torch.float64)  # t2, t1, t0, t'
    lam = 0.5 * SCHED.log_snr(t_grid)
    state = StepState(SCHED, history={"dpmpp_3m": ((m1, lam[1].expand(5)), (m2, lam[0].expand(5)))})
    den = lambda x_, t_: (m0, None)  # noqa: E731  a fixed data prediction at the current point
    out = dpmpp_3m(den, x, t_grid[2].expand(5), t_grid[3].expand(5), state)
    h1, h0, h = (float(lam[i + 1] - lam[i]) for i in range(3))
    f01, f12 = (m0 - m1) / h0, (m1 - m2) / h1
    d2 = (f01 - f12) / (h0 + h1)
    d1 = f01 + h0 * d2
    g1 = 1 - math.exp(-h)
    g2 = h - g1
    g3 = h**2 / 2 - g2
    (_, sigma), (alpha_n, sigma_n) = (SCHED.alpha_sigma(t_grid[i]) for i in (2, 3))
    ref = sigma_n / sigma * x + alpha_n * (g1 * m0 + g2 * d1 + 2 * g3 * d2)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


# --- guidance by an energy -----------------------------------------------------------------------

STD_NORMAL = ad.oracles.GaussianMixture([1.0], [[0.0, 0.0]], [1.0])


def test_energy_guidance_through_the_network_is_exact_for_a_gaussian_and_linear_energy():
    """Data N(0, I), energy E(x0) = a.x0: the tilted density N(x; 0, I) exp(-a.x) is N(-a, I), and
    its exact score at time t is the data's plus grad log E[exp(-a.x0) | x_t] = -alpha_t a, which is
    what ``energy_gradient="x_t"`` adds at scale 1 (x0_hat = alpha_t x_t here). So every sampler
    must land on N(-a, I)."""
    a = torch.tensor([1.5, -0.5])
    for sampler, steps in (("dpmpp_2m", 30), ("ddpm", 200)):
        x = ad.sample(STD_NORMAL.model(SCHED), (20000, 2), schedule=SCHED, sampler=sampler, steps=steps,
                      timesteps="logsnr" if sampler == "dpmpp_2m" else "trailing",
                      energy=lambda x0: x0 @ a.to(x0.dtype), energy_gradient="x_t",
                      generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(x.mean(0), -a, atol=0.05, rtol=0)
        torch.testing.assert_close(torch.cov(x.T), torch.eye(2), atol=0.06, rtol=0)


def test_energy_guidance_on_x0_is_a_gradient_step_on_the_clean_estimate():
    """``energy_gradient="x0"``: x0' = x0_hat - s grad E(x0_hat) exactly, and eps follows x0'."""
    den_plain = ad.sampling.Denoiser(GM.model(SCHED), SCHED, "eps")
    c = torch.tensor([2.0, 1.0])
    energy = lambda x0: 0.5 * ((x0 - c) ** 2).sum(-1)  # noqa: E731  gradient x0 - c
    den = ad.sampling.Denoiser(GM.model(SCHED), SCHED, "eps", energy=energy, energy_scale=0.3)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    t = torch.full((64,), 0.4, dtype=torch.float64)
    x0_hat, _ = den_plain(x, t)
    x0, eps = den(x, t)
    torch.testing.assert_close(x0, x0_hat - 0.3 * (x0_hat - c))
    alpha, sigma = SCHED.alpha_sigma(t)
    torch.testing.assert_close(alpha[:, None].float() * x0 + sigma[:, None].float() * eps, x)


def test_energy_guidance_pulls_samples_and_scale_zero_changes_nothing():
    """Both modes move samples of the mixture towards low energy; scale 0 is the plain sampler."""
    kw = dict(schedule=SCHED, sampler="dpmpp_2m", steps=20, timesteps="logsnr")
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    right = lambda x0: torch.nn.functional.softplus(-x0[:, 0])  # noqa: E731  low for x > 0
    plain = ad.sample(GM.model(SCHED), (4000, 2), generator=g(), **kw)
    torch.testing.assert_close(ad.sample(GM.model(SCHED), (4000, 2), generator=g(), energy=right,
                                         energy_scale=0.0, **kw), plain)
    share = (plain[:, 0] > 0).float().mean()
    for mode in ("x0", "x_t"):
        guided = ad.sample(GM.model(SCHED), (4000, 2), generator=g(), energy=right, energy_scale=3.0,
                           energy_gradient=mode, **kw)
        assert (guided[:, 0] > 0).float().mean() > share + 0.15, mode
        assert torch.isfinite(guided).all()


@pytest.mark.parametrize("energy,kw,match", [
    ("not callable", {}, "energy must be a callable"),
    (lambda x0: x0.sum(), {}, r"one value per sample"),
    (lambda x0: torch.ones(x0.shape[0]), {}, "does not depend differentiably"),
    (lambda x0: x0[:, 0] * float("nan"), {}, r"energy\(x0\)"),
    (lambda x0: x0[:, 0], {"energy_scale": -1.0}, "energy_scale"),
    (lambda x0: x0[:, 0], {"energy_gradient": "eps"}, "energy_gradient"),
])
def test_bad_energy_names_the_argument(energy, kw, match):
    with pytest.raises(ValueError, match=match):
        ad.sample(GM.model(SCHED), (8, 2), schedule=SCHED, steps=3, energy=energy, **kw)
