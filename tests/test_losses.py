"""Tests of anydiff.losses against references: brute-force conversions between
parameterizations (anydiff.convert), the closed forms of Hang et al. (2023), the exact
Gaussian-mixture denoiser and the closed-form Bayes error for Gaussian data.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import anydiff as ad
from anydiff.losses import denoising_loss, loss_weight, sample_time, stable_target
from anydiff.parameterization import PREDICTIONS
from strategies import EVENTS, KINDS, build, schedules

FAST = settings(max_examples=25, deadline=None)
F64 = torch.float64


def mixture(D: int = 2) -> ad.oracles.GaussianMixture:
    means = np.stack([np.zeros(D), np.linspace(1.0, 2.0, D)])
    return ad.oracles.GaussianMixture([1.0, 2.0], means, [0.5, 0.3])


def snr_of(sched, t):
    a2, s2 = sched.alpha2_sigma2(t)
    return a2 / s2


def x0_space_weight(weighting, snr, gamma):
    return snr if weighting == "snr" else torch.clamp(snr, max=gamma)


# -- sample_time ------------------------------------------------------------------------------
def test_sample_time_uniform_range_and_moments():
    sched = ad.schedules.linear(1000)
    t = sample_time(200_000, schedule=sched, generator=torch.Generator().manual_seed(0))
    assert t.shape == (200_000,) and t.dtype == F64
    assert float(t.min()) > 0.0 and float(t.max()) <= 1.0
    se = math.sqrt(1 / 12 / t.numel())
    assert abs(float(t.mean()) - 0.5) < 5 * se
    again = sample_time(200_000, schedule=sched, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)


def test_sample_time_uniform_never_snaps_to_zero(monkeypatch):
    """u just below 1 gives t = 1 - u ~ 1e-16, which alpha_sigma would snap to t = 0
    (sigma_t = 0); the floor keeps sigma_t > 0."""
    sched = ad.schedules.linear(1000)
    u_max = torch.nextafter(torch.ones((), dtype=F64), torch.zeros((), dtype=F64))
    monkeypatch.setattr(torch, "rand", lambda n, **kw: torch.full((n,), float(u_max), dtype=F64))
    t = sample_time(4, schedule=sched)
    assert float(t.min()) > 0 and float(sched.alpha2_sigma2(t)[1].min()) > 0
    w = loss_weight(t, schedule=sched, prediction="x0", weighting="snr")
    assert bool(torch.isfinite(w).all())


@pytest.mark.parametrize("T", [1, 3, 10, 1000])
def test_sample_time_discrete_grid(T):
    sched = ad.schedules.cosine(T)
    t = sample_time(5000, schedule=sched, time_sampling="discrete",
                    generator=torch.Generator().manual_seed(2))
    assert t.dtype == F64 and t.shape == (5000,)
    k = torch.round(t * T)
    assert torch.equal(t, k / T)  # exactly on the grid k / T
    assert float(k.min()) >= 1 and float(k.max()) <= T
    if T <= 10:
        assert set(k.long().tolist()) == set(range(1, T + 1))


def test_sample_time_empty_and_device():
    sched = ad.schedules.linear(10)
    assert sample_time(0, schedule=sched).shape == (0,)
    assert sample_time(3, schedule=sched, device="cpu").device.type == "cpu"


# -- loss_weight ------------------------------------------------------------------------------
@FAST
@given(sched=schedules(), B=st.integers(1, 4), event=st.sampled_from(EVENTS),
       weighting=st.sampled_from(["snr", "min_snr"]), gamma=st.floats(0.1, 20.0),
       seed=st.integers(0, 2**31 - 1), t_lo=st.sampled_from([1e-6, 1e-3, 0.3, 0.99]))
def test_weighted_loss_is_the_x0_space_weighted_loss(sched, B, event, weighting, gamma, seed, t_lo):
    """w_p * MSE_p == W(SNR) * MSE_x0 for one model error, expressed exactly in each
    parameterization at the same x_t with anydiff.convert."""
    g = torch.Generator().manual_seed(seed)
    t = t_lo + (1 - t_lo) * torch.rand(B, generator=g, dtype=F64)
    t[0] = 1.0  # include t = 1 (SNR = 0 when the schedule has zero terminal SNR)
    x0 = torch.randn(B, *event, generator=g, dtype=F64)
    eps = torch.randn(B, *event, generator=g, dtype=F64)
    x0_hat = x0 + torch.randn(B, *event, generator=g, dtype=F64)
    x_t = sched.q_sample(x0, t, eps)
    mse_x0 = (x0_hat - x0).square().flatten(1).mean(1)
    want = x0_space_weight(weighting, snr_of(sched, t), gamma) * mse_x0
    for p in PREDICTIONS:
        pred = ad.convert(x0_hat, source="x0", target=p, x_t=x_t, t=t, schedule=sched)
        target = ad.convert(x0, source="x0", target=p, x_t=x_t, t=t, schedule=sched)
        mse_p = (pred - target).square().flatten(1).mean(1)
        w = loss_weight(t, schedule=sched, prediction=p, weighting=weighting, min_snr_gamma=gamma)
        assert w.shape == (B,) and w.dtype == F64
        torch.testing.assert_close(w * mse_p, want, rtol=1e-8, atol=1e-300, msg=p)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_uniform_weighting_is_one(prediction):
    sched = ad.schedules.linear(1000, zero_terminal_snr=True)
    t = torch.tensor([1e-6, 0.5, 1.0], dtype=F64)
    assert torch.equal(loss_weight(t, schedule=sched, prediction=prediction), torch.ones(3, dtype=F64))


@pytest.mark.parametrize("gamma", [0.5, 1.0, 5.0])
@pytest.mark.parametrize("kind", KINDS)
def test_min_snr_factors_match_hang_et_al(kind, gamma):
    """Hang et al. (2023), sec. 3.4: eps min(SNR, gamma)/SNR, v min(SNR, gamma)/(SNR + 1), x0
    min(SNR, gamma); score: the x0-space weight over c_score = SNR / sigma^2."""
    sched = build(kind, 1000, False)
    t = torch.linspace(1e-4, 1.0, 257, dtype=F64)
    snr = snr_of(sched, t)
    m = torch.clamp(snr, max=gamma)
    sigma2 = sched.alpha2_sigma2(t)[1]
    want = {"eps": m / snr, "v": m / (snr + 1), "x0": m, "score": m * sigma2 / snr}
    for p, ref in want.items():
        got = loss_weight(t, schedule=sched, prediction=p, weighting="min_snr", min_snr_gamma=gamma)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=0, msg=p)
    got_snr_eps = loss_weight(t, schedule=sched, prediction="eps", weighting="snr")
    assert torch.equal(got_snr_eps, torch.ones_like(t))  # "snr" is the plain eps loss


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("weighting", ["uniform", "snr", "min_snr"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_weights_finite_at_zero_terminal_snr_and_tiny_t(kind, weighting, prediction):
    sched = build(kind, 1000, True)
    t = torch.tensor([1.0, 1 - 1e-12, 0.999, 1e-3, 1e-8, 2e-9 / 1000 * 2], dtype=F64)
    w = loss_weight(t, schedule=sched, prediction=prediction, weighting=weighting)
    assert bool(torch.isfinite(w).all()) and bool((w >= 0).all()), w
    if weighting != "uniform":  # x0-space weight SNR or min(SNR, gamma) is 0 at SNR = 0 ...
        want_t1 = {"eps": 1.0, "x0": 0.0, "v": 0.0, "score": 1.0}[prediction]  # ... over c_p
        assert float(w[0]) == want_t1


# -- denoising_loss: the exact denoiser --------------------------------------------------------
def fixed_draws(B, D, seed=0, dtype=F64, t_range=(0.05, 0.95)):
    g = torch.Generator().manual_seed(seed)
    x0 = mixture(D).sample(B, g, dtype=dtype)
    t = t_range[0] + (t_range[1] - t_range[0]) * torch.rand(B, generator=g, dtype=F64)
    noise = torch.randn(B, D, generator=g, dtype=dtype)
    return x0, t, noise


@pytest.mark.parametrize("weighting", ["uniform", "min_snr"])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_exact_denoiser_beats_a_perturbed_one(prediction, weighting):
    sched = ad.schedules.cosine(1000)
    # t >= 0.2: the plain score loss is dominated by 1/sigma^2 at small t, which would drown
    # the c^2 gap in Monte Carlo noise (the margin is > 8 % over 30 seeds at this size)
    x0, t, noise = fixed_draws(2000, 2, t_range=(0.2, 0.95))
    exact = mixture(2).model(sched, prediction)
    kw = dict(schedule=sched, prediction=prediction, weighting=weighting, t=t, noise=noise)
    best = denoising_loss(exact, x0, **kw)
    for c in (0.3, -0.3):
        worse = denoising_loss(lambda x, tt, cond=None: exact(x, tt) + c, x0, **kw)
        assert float(best) < float(worse)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_model_returning_the_true_target_has_zero_loss(prediction, dtype):
    sched = ad.schedules.linear(1000, zero_terminal_snr=True)
    x0, t, noise = fixed_draws(64, 3, seed=1, dtype=dtype, t_range=(0.01, 1.0))

    def cheat(x_t, t_model, cond=None):  # reads the captured x0 and noise
        a, s = sched.coefficients(t, x0)
        return {"eps": noise, "x0": x0, "v": a * noise - s * x0, "score": -noise / s}[prediction]

    loss = denoising_loss(cheat, x0, schedule=sched, prediction=prediction, t=t, noise=noise,
                          weighting="min_snr")
    assert float(loss) == 0.0


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("t_fixed", [0.2, 0.6])
def test_expected_loss_of_exact_denoiser_is_bayes_error(prediction, t_fixed):
    """x0 ~ N(0, s^2 I): with r = alpha^2 s^2 + sigma^2, Var[x0 | x_t] = s^2 sigma^2 / r and
    Var[eps | x_t] = alpha^2 s^2 / r per dim; v = alpha eps - sigma x0 and score = -eps / sigma
    are affine in x0 (resp. eps) at fixed x_t: Var[v | x_t] = Var[x0 | x_t] / sigma^2,
    Var[score | x_t] = Var[eps | x_t] / sigma^2."""
    s, D, B = 1.7, 4, 20_000
    sched = ad.schedules.linear(1000)
    gm = ad.oracles.GaussianMixture([1.0], np.zeros((1, D)), [s])
    g = torch.Generator().manual_seed(3)
    x0 = gm.sample(B, g, dtype=F64)
    t = torch.full((B,), t_fixed, dtype=F64)
    per = denoising_loss(gm.model(sched, prediction), x0, schedule=sched, prediction=prediction,
                         t=t, generator=g, reduction="none")
    a2, s2 = (float(c[0]) for c in sched.alpha2_sigma2(t[:1]))
    r = a2 * s**2 + s2
    var_x0, var_eps = s**2 * s2 / r, a2 * s**2 / r
    bayes = {"x0": var_x0, "eps": var_eps, "v": var_x0 / s2, "score": var_eps / s2}[prediction]
    se = float(per.std()) / math.sqrt(B)
    assert abs(float(per.mean()) - bayes) < 5 * se, (float(per.mean()), bayes, se)


# -- denoising_loss: mask, reduction, per-sample t -----------------------------------------------
def reference_loss(out, x0, noise, t, sched, prediction, weighting, mask, gamma=5.0):
    """Brute force in numpy: per-sample masked mean of w (out - target)^2, mean over samples
    with an observed entry."""
    a2, s2 = (c.numpy() for c in sched.alpha2_sigma2(t))
    shape = (-1,) + (1,) * (x0.ndim - 1)
    a, s = np.sqrt(a2).reshape(shape), np.sqrt(s2).reshape(shape)
    x0 = np.where(mask, x0, 0.0)
    target = {"eps": noise, "x0": x0, "v": a * noise - s * x0, "score": -noise / s}[prediction]
    snr = a2 / s2
    c_p = {"x0": 1.0, "eps": snr, "v": snr + 1, "score": snr / s2}[prediction]
    W = {"snr": snr, "min_snr": np.minimum(snr, gamma)}.get(weighting)
    w = np.ones_like(snr) if W is None else W / c_p
    B = x0.shape[0]
    m = np.broadcast_to(mask, x0.shape).reshape(B, -1).astype(float)
    err2 = ((out - target) ** 2).reshape(B, -1)
    count = m.sum(1)
    per = w * (m * err2).sum(1) / np.maximum(count, 1)
    return per, per[count > 0].mean() if (count > 0).any() else 0.0


@FAST
@given(seed=st.integers(0, 2**31 - 1), event=st.sampled_from(EVENTS), B=st.integers(1, 5),
       prediction=st.sampled_from(PREDICTIONS), weighting=st.sampled_from(["uniform", "snr", "min_snr"]),
       broadcast=st.booleans())
def test_masked_loss_matches_brute_force(seed, event, B, prediction, weighting, broadcast):
    sched = ad.schedules.cosine(100, zero_terminal_snr=True)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(B, *event, generator=g, dtype=F64)
    noise = torch.randn(B, *event, generator=g, dtype=F64)
    t = 0.01 + 0.99 * torch.rand(B, generator=g, dtype=F64)
    mshape = (B, *event[:-1], 1) if broadcast else (B, *event)
    mask = torch.rand(mshape, generator=g) < 0.6
    mask[0] = False  # a sample with nothing observed contributes nothing
    x0 = torch.where(mask, x0, torch.nan)  # missing values may be NaN
    scale = torch.randn(event, generator=g, dtype=F64)
    model = lambda x_t, tt, cond=None: x_t * scale  # noqa: E731
    got = denoising_loss(model, x0, schedule=sched, prediction=prediction, weighting=weighting,
                         mask=mask, t=t, noise=noise, reduction="none")
    x0_filled = torch.where(mask, x0, 0.0)
    out = model(sched.q_sample(x0_filled, t, noise), t)
    per, mean = reference_loss(out.numpy(), x0.numpy(), noise.numpy(), t, sched, prediction,
                               weighting, mask.numpy())
    np.testing.assert_allclose(got.numpy(), per, rtol=1e-10, atol=1e-300)
    got_mean = denoising_loss(model, x0, schedule=sched, prediction=prediction, weighting=weighting,
                              mask=mask, t=t, noise=noise)
    np.testing.assert_allclose(float(got_mean), mean, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_all_ones_mask_equals_no_mask_exactly(prediction, dtype):
    sched = ad.schedules.linear(1000)
    x0, t, noise = fixed_draws(32, 3, seed=4, dtype=dtype)
    model = mixture(3).model(sched, prediction)
    kw = dict(schedule=sched, prediction=prediction, weighting="min_snr", t=t, noise=noise)
    for reduction in ("mean", "none"):
        ref = denoising_loss(model, x0, reduction=reduction, **kw)
        for mask in (torch.ones_like(x0), torch.ones(32, 3, dtype=torch.bool), torch.ones(32, 1),
                     torch.ones(3, dtype=torch.int64)):
            assert torch.equal(denoising_loss(model, x0, mask=mask, reduction=reduction, **kw), ref)


def test_missing_values_do_not_change_the_loss():
    sched = ad.schedules.linear(1000)
    x0, t, noise = fixed_draws(16, 2, seed=5)
    mask = torch.rand(16, 2, generator=torch.Generator().manual_seed(0)) < 0.5
    model = mixture(2).model(sched, "v")
    kw = dict(schedule=sched, prediction="v", mask=mask, t=t, noise=noise)
    losses = [denoising_loss(model, torch.where(mask, x0, fill), **kw)
              for fill in (torch.nan, torch.inf, 1e6, -3.0)]
    assert bool(torch.isfinite(losses[0]))
    assert all(torch.equal(loss, losses[0]) for loss in losses)


def test_reduction_none_and_per_sample_t():
    sched = ad.schedules.sigmoid(1000)
    x0, t, noise = fixed_draws(8, 2, seed=6)
    model = mixture(2).model(sched, "x0")
    kw = dict(schedule=sched, prediction="x0", weighting="snr")
    per = denoising_loss(model, x0, t=t, noise=noise, reduction="none", **kw)
    assert per.shape == (8,) and per.dtype == F64
    torch.testing.assert_close(denoising_loss(model, x0, t=t, noise=noise, **kw), per.mean())
    for i in range(8):  # sample i sees its own t
        one = denoising_loss(model, x0[i:i + 1], t=t[i:i + 1], noise=noise[i:i + 1], **kw)
        torch.testing.assert_close(one, per[i], rtol=1e-12, atol=0)
    # a scalar t is broadcast to every sample
    scalar = denoising_loss(model, x0, t=t[3], noise=noise, reduction="none", **kw)
    full = denoising_loss(model, x0, t=t[3].expand(8), noise=noise, reduction="none", **kw)
    assert torch.equal(scalar, full)


# -- denoising_loss: the model call ------------------------------------------------------------
class Recorder:
    def __init__(self, with_keep=False):
        self.calls = []
        self.with_keep = with_keep

    def __call__(self, x_t, t, cond=None, **kw):
        if kw and not self.with_keep:
            raise TypeError("unexpected keyword")
        self.calls.append((x_t, t, cond, kw))
        return torch.zeros_like(x_t)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_model_call_time_dtype_cond_and_cond_keep(dtype):
    sched = ad.schedules.linear(50)
    x0 = torch.randn(6, 4, 3, dtype=dtype)
    rec = Recorder()
    cond = torch.arange(6)
    loss = denoising_loss(rec, x0, schedule=sched, cond=cond, time_sampling="discrete",
                          generator=torch.Generator().manual_seed(0))
    (x_t, t, c, kw), = rec.calls
    assert t.dtype == dtype and t.shape == (6,) and c is cond and kw == {}
    assert x_t.shape == x0.shape and loss.dtype == dtype and loss.ndim == 0
    k = t.double() * sched.T
    assert torch.allclose(k, k.round(), atol=1e-4) and float(k.min()) >= 1
    keep = torch.tensor([True, False] * 3)
    rec = Recorder(with_keep=True)
    denoising_loss(rec, x0, schedule=sched, cond=cond, cond_keep=keep)
    assert rec.calls[0][3]["cond_keep"] is keep


def test_generator_makes_the_loss_reproducible():
    sched = ad.schedules.linear(1000)
    x0 = mixture(2).sample(64, torch.Generator().manual_seed(0))
    model = mixture(2).model(sched, "eps")
    a, b = (denoising_loss(model, x0, schedule=sched, generator=torch.Generator().manual_seed(9))
            for _ in range(2))
    assert torch.equal(a, b) and bool(torch.isfinite(a))


# -- bad input ---------------------------------------------------------------------------------
def test_bad_input_raises_value_error_naming_the_argument():
    sched = ad.schedules.linear(100)
    x0 = torch.randn(4, 3)
    ok = lambda x_t, t, cond=None: torch.zeros_like(x_t)  # noqa: E731
    cases = [
        (dict(prediction="noise"), "prediction"),
        (dict(weighting="p2"), "weighting"),
        (dict(time_sampling="lognormal"), "time_sampling"),
        (dict(reduction="sum"), "reduction"),
        (dict(weighting="min_snr", min_snr_gamma=0.0), "min_snr_gamma"),
        (dict(min_snr_gamma=float("nan")), "min_snr_gamma"),
        (dict(mask=torch.ones(4, 2)), "mask"),
        (dict(mask=torch.ones(5, 3)), "mask"),
        (dict(mask=[[1, 1, 1]] * 4), "mask"),
        (dict(noise=torch.randn(4, 2)), "noise"),
        (dict(t=torch.rand(3, dtype=F64)), "t"),
        (dict(t=torch.tensor([1, 2, 3, 4])), "t"),
    ]
    for kw, name in cases:
        with pytest.raises(ValueError, match=name):
            denoising_loss(ok, x0, schedule=sched, **kw)
    with pytest.raises(ValueError, match="model"):
        denoising_loss(lambda x_t, t, cond=None: x_t[:, :2], x0, schedule=sched)
    with pytest.raises(ValueError, match="model"):
        denoising_loss(lambda x_t, t, cond=None: None, x0, schedule=sched)
    for bad in (torch.zeros(4, 3, dtype=torch.int64), torch.zeros(0, 3), np.zeros((4, 3))):
        with pytest.raises(ValueError, match="x0"):
            denoising_loss(ok, bad, schedule=sched)
    with pytest.raises(ValueError, match="batch"):
        sample_time(-1, schedule=sched)
    with pytest.raises(ValueError, match="time_sampling"):
        sample_time(3, schedule=sched, time_sampling="grid")
    with pytest.raises(ValueError, match="prediction"):
        loss_weight(torch.rand(3, dtype=F64), schedule=sched, prediction="eta")
    with pytest.raises(ValueError, match="weighting"):
        loss_weight(torch.rand(3, dtype=F64), schedule=sched, prediction="eps", weighting="edm")


# -- stable_target ------------------------------------------------------------------------------
def posterior_mean_brute(x0, noise, t, reference, sched, allowed):
    """numpy, one row at a time: the mean of {x0_i} + the allowed reference rows, weighted by
    N(x_t; alpha r, sigma^2 I)."""
    a, s = (c.numpy() for c in sched.alpha_sigma(t))
    out = []
    for i in range(x0.shape[0]):
        x_t = a[i] * x0[i] + s[i] * noise[i]
        cand = np.concatenate([x0[i][None], reference[allowed[i]]])
        logw = -((x_t[None] - a[i] * cand) ** 2).reshape(len(cand), -1).sum(1) / (2 * s[i] ** 2)
        w = np.exp(logw - logw.max())
        out.append(np.tensordot(w / w.sum(), cand, axes=1))
    return np.stack(out)


@FAST
@given(sched=schedules(), B=st.integers(1, 5), R=st.integers(1, 7), event=st.sampled_from(EVENTS),
       seed=st.integers(0, 2**31 - 1), t_lo=st.sampled_from([1e-4, 0.05, 0.5]), masked=st.booleans())
def test_stable_target_is_the_posterior_mean_over_x0_and_the_reference(sched, B, R, event, seed, t_lo, masked):
    g = torch.Generator().manual_seed(seed)
    t = t_lo + (1 - t_lo) * torch.rand(B, generator=g, dtype=F64)
    t[0] = 1.0  # SNR 0 with a zero-terminal-SNR schedule: the plain mean of all candidates
    x0 = torch.randn(B, *event, generator=g, dtype=F64)
    noise = torch.randn(B, *event, generator=g, dtype=F64)
    ref = torch.randn(R, *event, generator=g, dtype=F64) * 0.5
    allowed = torch.rand(B, R, generator=g) < 0.5 if masked else None
    x0_bar, noise_bar = stable_target(x0, noise, t, ref, schedule=sched, allowed=allowed)
    want = posterior_mean_brute(x0.numpy(), noise.numpy(), t, ref.numpy(), sched,
                                np.ones((B, R), bool) if allowed is None else allowed.numpy())
    np.testing.assert_allclose(x0_bar.numpy(), want, rtol=1e-7, atol=1e-9)
    # the same x_t: only the target moves
    torch.testing.assert_close(sched.q_sample(x0_bar, t, noise_bar), sched.q_sample(x0, t, noise),
                               rtol=1e-9, atol=1e-9)


def test_stable_target_is_the_plain_target_at_low_noise():
    """Where the other rows are many sigma away, all weight is on x0: the result is bit for bit
    the plain (x0, eps), in float32 too."""
    g = torch.Generator().manual_seed(0)
    x0, noise, ref = torch.randn(64, 3, generator=g), torch.randn(64, 3, generator=g), torch.randn(256, 3, generator=g)
    t = torch.full((64,), 1e-4, dtype=F64)
    x0_bar, noise_bar = stable_target(x0, noise, t, ref, schedule=ad.schedules.cosine(1000))
    assert torch.equal(x0_bar, x0) and torch.equal(noise_bar, noise)


@pytest.mark.parametrize("t_fixed", [0.5, 0.7, 0.9])
def test_stable_target_has_far_less_variance_than_the_plain_one(t_fixed):
    """Data +-1 with equal probability: E[x0 | x_t] = tanh(alpha x_t / sigma^2). The plain target
    x0 misses it by Var[x0 | x_t]; the stable target over 512 reference rows, bias and noise of
    the self-normalised estimate together, by far less."""
    sched = ad.schedules.cosine(1000)
    g = torch.Generator().manual_seed(1)
    B = 4000
    x0 = torch.rand(B, 1, generator=g, dtype=F64).lt(0.5).to(F64) * 2 - 1
    noise = torch.randn(B, 1, generator=g, dtype=F64)
    ref = torch.rand(512, 1, generator=g, dtype=F64).lt(0.5).to(F64) * 2 - 1
    t = torch.full((B,), t_fixed, dtype=F64)
    a, s = (float(c[0]) for c in sched.alpha_sigma(t[:1]))
    exact = torch.tanh(a * (a * x0 + s * noise) / s**2)
    x0_bar, _ = stable_target(x0, noise, t, ref, schedule=sched)
    plain_err = float((x0 - exact).square().mean())
    assert plain_err > 0.3
    assert float((x0_bar - exact).square().mean()) < 0.005 * plain_err


def test_stable_target_bad_input():
    sched = ad.schedules.cosine(100)
    x0, noise, t = torch.randn(4, 3), torch.randn(4, 3), torch.rand(4, dtype=F64)
    with pytest.raises(ValueError, match="reference"):
        stable_target(x0, noise, t, torch.randn(8, 2), schedule=sched)
    with pytest.raises(ValueError, match="allowed"):
        stable_target(x0, noise, t, torch.randn(8, 3), schedule=sched, allowed=torch.ones(4, 7, dtype=torch.bool))
