"""Property tests of the forward process against closed-form Gaussian algebra.

* ``q(x_t | x0) = N(alpha_t x0, sigma_t^2 I)`` -- sample moments, many draws;
* ``q(x_t | x_s) = N(alpha_t / alpha_s x_s, sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2)``
  (Kingma et al. 2021, eq. 2-4) -- two steps s -> u -> t against one jump;
* ``q(x_s | x_t, x0)`` -- Bayes' rule written out as a precision-weighted product of the prior
  ``x_s | x0 ~ N(alpha_s x0, sigma_s^2)`` and the likelihood ``x_t | x_s ~ N(a x_s, v)``, in numpy.

Statistical checks use fixed seeds and tolerances of 5 standard errors (the hypothesis inputs
only pick schedules, times and shapes).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import anydiff as ad
from strategies import DTYPES, EVENTS, KINDS, bcast, build, schedules
from anydiff.process import q_step

FAST = settings(max_examples=30, deadline=None)
SLOW = settings(max_examples=10, deadline=None)


def times(lo=0.0, hi=1.0):
    return st.one_of(st.floats(lo, hi), st.sampled_from([lo, hi]))


def ab_np(schedule, t):
    """alpha_t, sigma_t as float64 numpy arrays."""
    a, s = schedule.alpha_sigma(torch.as_tensor(t, dtype=torch.float64))
    return a.numpy(), s.numpy()


def eps_of(dtype):
    return torch.finfo(dtype).eps


def np_posterior(x0, x_t, a_s, s_s, a_t, s_t):
    """Mean and variance of x_s | x_t, x0 by Bayes' rule (precision-weighted product), numpy,
    per sample; arrays of coefficients have shape (B,)."""
    x0 = np.asarray(x0, np.float64)
    x_t = np.asarray(x_t, np.float64)
    means, variances = [], []
    for i in range(x0.shape[0]):
        if s_s[i] == 0.0:  # s = 0: x_s = x0 exactly
            means.append(x0[i] / 1.0 * a_s[i])
            variances.append(0.0)
            continue
        a = a_t[i] / a_s[i]  # x_t | x_s ~ N(a x_s, v)
        v = s_t[i] ** 2 - a**2 * s_s[i] ** 2
        prec = 1.0 / s_s[i] ** 2 + a**2 / v
        mean = (a_s[i] * x0[i] / s_s[i] ** 2 + a * x_t[i] / v) / prec
        means.append(mean)
        variances.append(1.0 / prec)
    return np.stack(means), np.array(variances)


# ---------------------------------------------------------------------------------------------
# q_sample
# ---------------------------------------------------------------------------------------------


@FAST
@given(sched=schedules(), event=st.sampled_from(EVENTS), B=st.integers(1, 4),
       dtype=st.sampled_from(DTYPES), data=st.data(), scalar_t=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_q_sample_with_given_noise_is_exact(sched, event, B, dtype, data, scalar_t, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = (3 * torch.randn((B, *event), generator=g, dtype=torch.float64)).to(dtype)
    noise = torch.randn((B, *event), generator=g, dtype=torch.float64).to(dtype)
    if scalar_t:
        t = torch.tensor(data.draw(times(), label="t"), dtype=torch.float64)
        tb = np.full(B, float(t))
    else:
        tb = np.array(data.draw(st.lists(times(), min_size=B, max_size=B), label="t"))
        t = torch.tensor(tb, dtype=dtype)
        tb = t.double().numpy()  # the times actually passed
    x_t = sched.q_sample(x0, t, noise=noise)
    assert x_t.shape == x0.shape and x_t.dtype == dtype
    a, s = ab_np(sched, tb)
    n = x0.ndim
    want = bcast(a, n) * x0.double().numpy() + bcast(s, n) * noise.double().numpy()
    tol = 8 * eps_of(dtype) * (1 + np.abs(x0.double().numpy()) + np.abs(noise.double().numpy()))
    assert np.all(np.abs(x_t.double().numpy() - want) <= tol)
    # the module-level function agrees
    torch.testing.assert_close(ad.process.q_sample(sched, x0, t, noise=noise), x_t, rtol=0, atol=0)


@SLOW
@given(sched=schedules(), event=st.sampled_from(EVENTS), dtype=st.sampled_from(DTYPES),
       t=st.lists(times(), min_size=3, max_size=3))
def test_q_sample_moments(sched, event, dtype, t):
    n_draws, B = 2000, 3
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64).reshape(B, *(1,) * len(event))
    x0 = (x0 + torch.linspace(-1, 1, math.prod(event), dtype=torch.float64).reshape(event)).to(dtype)
    tt = torch.tensor(t, dtype=torch.float64)
    x_t = sched.q_sample(x0.repeat(n_draws, *(1,) * len(event)), tt.repeat(n_draws), generator=g)
    assert x_t.dtype == dtype
    x = x_t.double().numpy().reshape(n_draws, B, *event)
    a, s = ab_np(sched, t)
    mu = bcast(a, 1 + len(event)) * x0.double().numpy()
    sd = bcast(s, 1 + len(event)) * np.ones(event)
    mean, var = x.mean(0), x.var(0, ddof=1)
    fp = 1e-5 if dtype == torch.float32 else 1e-12
    assert np.all(np.abs(mean - mu) <= 5 * sd / math.sqrt(n_draws) + fp * (1 + np.abs(mu)))
    assert np.all(np.abs(var - sd**2) <= 5 * sd**2 * math.sqrt(2 / (n_draws - 1)) + fp)
    # pooled standardized residuals are N(0, 1)
    keep = np.broadcast_to(sd > 0, mean.shape)
    if keep.any():
        z = ((x - mu) / np.where(sd > 0, sd, 1))[:, keep]
        m = z.size
        assert abs(z.mean()) <= 5 / math.sqrt(m)
        assert abs(z.var() - 1) <= 5 * math.sqrt(2 / m) + 1e-4


def test_q_sample_generator_reproducible():
    s = ad.schedules.cosine(50)
    x0 = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0.1, 0.9, 5)
    a = s.q_sample(x0, t, generator=torch.Generator().manual_seed(7))
    b = s.q_sample(x0, t, generator=torch.Generator().manual_seed(7))
    c = s.q_sample(x0, t, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("sched", [ad.schedules.cosine(1000), ad.schedules.cosine(10),
                                   ad.schedules.linear(1000, zero_terminal_snr=True),
                                   ad.schedules.sigmoid(20, zero_terminal_snr=True),
                                   ad.schedules.linear(3, zero_terminal_snr=True)],
                         ids=["cosine1000", "cosine10", "linear1000-ztsnr", "sigmoid20-ztsnr",
                              "linear3-ztsnr"])
def test_marginal_at_t1_is_standard_normal(sched):
    n, D = 20000, 3
    g = torch.Generator().manual_seed(3)
    x0 = torch.tensor([[4.0, -3.0, 0.5]], dtype=torch.float64).expand(n, D)
    x1 = sched.q_sample(x0, torch.tensor(1.0, dtype=torch.float64), generator=g).numpy()
    a1, s1 = ab_np(sched, 1.0)
    # closed form: KL(N(a x0, s^2) || N(0, 1)) per dimension is tiny
    kl = 0.5 * (s1**2 + a1**2 * x0[0].numpy() ** 2 - 1 - 2 * np.log(s1))
    assert np.all(kl < 1e-3)
    if sched.zero_terminal_snr:
        assert float(a1) == 0.0 and float(s1) == 1.0
    bias = float(a1) * 4.0
    assert np.all(np.abs(x1.mean(0)) <= 5 / math.sqrt(n) + bias)
    assert np.all(np.abs(x1.var(0) - 1) <= 5 * math.sqrt(2 / n) + 1e-3)
    # a standard-normal check that sees the whole law, not only two moments: P(x < 1)
    p = (x1 < 1.0).mean(0)
    phi1 = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    assert np.all(np.abs(p - phi1) <= 5 * math.sqrt(phi1 * (1 - phi1) / n) + bias)


def test_q_sample_bad_input():
    s = ad.schedules.linear(10)
    x0 = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="noise"):
        s.q_sample(x0, torch.full((4,), 0.5), noise=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="noise"):
        s.q_sample(x0, torch.full((4,), 0.5), noise=torch.zeros(3))
    with pytest.raises(ValueError, match=r"\bt\b"):
        s.q_sample(x0, torch.full((3,), 0.5))
    with pytest.raises(ValueError, match=r"\bt\b"):
        s.q_sample(x0, torch.full((4,), 1.5))
    with pytest.raises(ValueError, match=r"\bt\b"):
        s.q_sample(x0, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="x0"):
        s.q_sample(torch.tensor([[float("nan"), 0, 0]] * 4), torch.full((4,), 0.5))


# ---------------------------------------------------------------------------------------------
# q_step: two short steps equal one jump
# ---------------------------------------------------------------------------------------------


@st.composite
def three_times(draw):
    """s <= u <= t in [0, 1], with the ends 0 and 1 reachable."""
    xs = sorted(draw(st.lists(times(), min_size=3, max_size=3)))
    return xs


@SLOW
@given(sched=schedules(), event=st.sampled_from(EVENTS), dtype=st.sampled_from(DTYPES),
       sut=three_times())
def test_q_step_twice_equals_one_jump(sched, event, dtype, sut):
    s_, u, t = sut
    n_draws, B = 2000, 2
    g = torch.Generator().manual_seed(1)
    x_s = torch.linspace(-2, 3, B * math.prod(event), dtype=torch.float64).reshape(B, *event).to(dtype)
    X = x_s.repeat(n_draws, *(1,) * len(event))
    f = lambda v: torch.full((n_draws * B,), v, dtype=torch.float64)  # noqa: E731
    if s_ == 1.0 and sched.zero_terminal_snr:
        return  # alpha_s = 0: q(x_t | x_s) is only defined for s < 1
    X_u = q_step(sched, X, f(s_), f(u), generator=g)
    X_t = q_step(sched, X_u, f(u), f(t), generator=g)
    assert X_t.dtype == dtype and X_t.shape == X.shape
    x = X_t.double().numpy().reshape(n_draws, B, *event)
    (a_s, a_t), (sg_s, sg_t) = ab_np(sched, [s_, t])
    ratio = a_t / a_s
    var = max(sg_t**2 - ratio**2 * sg_s**2, 0.0)
    mu = ratio * x_s.double().numpy()
    fp = 2e-5 if dtype == torch.float32 else 1e-11
    sd = math.sqrt(var)
    assert np.all(np.abs(x.mean(0) - mu) <= 5 * sd / math.sqrt(n_draws) + fp * (1 + np.abs(mu)))
    assert np.all(np.abs(x.var(0, ddof=1) - var) <= 5 * var * math.sqrt(2 / (n_draws - 1)) + fp)
    if var > 1e-6:  # pooled standardized residuals are N(0, 1): a sharper test of the variance
        z = (x - mu) / sd
        m = z.size
        assert abs(z.mean()) <= 5 / math.sqrt(m)
        assert abs(z.var() - 1) <= 5 * math.sqrt(2 / m) + fp / var


@FAST
@given(sched=schedules(), event=st.sampled_from(EVENTS), dtype=st.sampled_from(DTYPES),
       sut=three_times(), seed=st.integers(0, 2**31 - 1))
def test_q_step_with_given_noise_is_exact(sched, event, dtype, sut, seed):
    s_, _, t = sut
    if s_ == 1.0 and sched.zero_terminal_snr:
        return
    g = torch.Generator().manual_seed(seed)
    B = 3
    x_s = torch.randn((B, *event), generator=g, dtype=torch.float64).to(dtype)
    noise = torch.randn((B, *event), generator=g, dtype=torch.float64).to(dtype)
    out = q_step(sched, x_s, torch.tensor(s_, dtype=torch.float64), torch.tensor(t, dtype=torch.float64),
                 noise=noise)
    (a_s, a_t), (sg_s, sg_t) = ab_np(sched, [s_, t])
    ratio = a_t / a_s
    want = ratio * x_s.double().numpy() + math.sqrt(max(sg_t**2 - ratio**2 * sg_s**2, 0)) * noise.double().numpy()
    np.testing.assert_allclose(out.double().numpy(), want, rtol=0, atol=16 * eps_of(dtype) * 4)
    # s = 0 is q_sample with the same noise
    if s_ == 0.0:
        torch.testing.assert_close(out, sched.q_sample(x_s, torch.tensor(t, dtype=torch.float64), noise=noise))


def test_q_step_bad_input():
    s = ad.schedules.linear(10)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="s <= t"):
        q_step(s, x, torch.tensor([0.6, 0.6]), torch.tensor([0.5, 0.7]))
    with pytest.raises(ValueError, match=r"\bs\b"):
        q_step(s, x, torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 0.7]))


# ---------------------------------------------------------------------------------------------
# q_posterior: Bayes' rule
# ---------------------------------------------------------------------------------------------


@st.composite
def time_pairs(draw, B, ztsnr):
    """B pairs s < t, including s = 0 and (with zero terminal SNR especially) t = 1."""
    ss, ts = [], []
    for _ in range(B):
        t = draw(st.one_of(st.floats(1e-3, 1.0), st.just(1.0)))
        s = draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0).map(lambda f: f * t * (1 - 1e-3))))
        ss.append(s)
        ts.append(t)
    return ss, ts


@FAST
@given(sched=schedules(), event=st.sampled_from(EVENTS), dtype=st.sampled_from(DTYPES),
       B=st.integers(1, 4), data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_q_posterior_is_the_bayes_posterior(sched, event, dtype, B, data, seed):
    ss, ts = data.draw(time_pairs(B, sched.zero_terminal_snr), label="s, t")
    g = torch.Generator().manual_seed(seed)
    x0 = (2 * torch.randn((B, *event), generator=g, dtype=torch.float64)).to(dtype)
    x_t = (2 * torch.randn((B, *event), generator=g, dtype=torch.float64)).to(dtype)
    s_t = torch.tensor(ss, dtype=torch.float64)
    t_t = torch.tensor(ts, dtype=torch.float64)
    mean, var = sched.q_posterior(x0, x_t, t_t, s_t)
    assert mean.shape == x0.shape and mean.dtype == dtype
    assert var.shape == (B,) + (1,) * len(event) and var.dtype == dtype
    a_s, sg_s = ab_np(sched, ss)
    a_t, sg_t = ab_np(sched, ts)
    want_mean, want_var = np_posterior(x0.double().numpy(), x_t.double().numpy(), a_s, sg_s, a_t, sg_t)
    scale = 1 + np.abs(x0.double().numpy()) + np.abs(x_t.double().numpy())
    tol = (1e-9 if dtype == torch.float64 else 3e-6) * scale
    assert np.all(np.abs(mean.double().numpy() - want_mean) <= tol)
    np.testing.assert_allclose(var.double().numpy().reshape(B), want_var,
                               rtol=1e-9 if dtype == torch.float64 else 3e-6, atol=1e-12)
    assert np.all(var.double().numpy() >= 0)
    # the module-level function agrees
    m2, v2 = ad.process.q_posterior(sched, x0, x_t, t_t, s_t)
    torch.testing.assert_close(m2, mean, rtol=0, atol=0)


@FAST
@given(kind=st.sampled_from(KINDS), T=st.one_of(st.integers(2, 10), st.just(1000)),
       s_=times(0.0, 0.999), event=st.sampled_from(EVENTS))
def test_q_posterior_at_t1_with_zero_terminal_snr_forgets_x_t(kind, T, s_, event):
    """With zero terminal SNR, x_1 carries no information: q(x_s | x_1, x0) = q(x_s | x0)."""
    sched = build(kind, T, True)
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn((2, *event), generator=g, dtype=torch.float64)
    x1 = torch.randn((2, *event), generator=g, dtype=torch.float64)
    mean, var = sched.q_posterior(x0, x1, torch.tensor(1.0, dtype=torch.float64),
                                  torch.tensor(s_, dtype=torch.float64))
    a_s, sg_s = ab_np(sched, s_)
    np.testing.assert_allclose(mean.numpy(), float(a_s) * x0.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(var.numpy().ravel(), float(sg_s) ** 2, rtol=1e-12, atol=1e-15)


@FAST
@given(sched=schedules(), event=st.sampled_from(EVENTS), t=st.floats(1e-3, 1.0))
def test_q_posterior_at_s0_is_x0(sched, event, t):
    x0 = torch.randn((3, *event), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x_t = torch.randn((3, *event), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mean, var = sched.q_posterior(x0, x_t, torch.tensor(t, dtype=torch.float64),
                                  torch.tensor(0.0, dtype=torch.float64))
    np.testing.assert_allclose(mean.numpy(), x0.numpy(), rtol=0, atol=1e-12)
    assert np.all(var.numpy() == 0)


@SLOW
@given(sched=schedules(), event=st.sampled_from(EVENTS), st_pair=st.tuples(times(0.0, 0.9), st.floats(0.05, 1.0)))
def test_q_posterior_agrees_with_monte_carlo(sched, event, st_pair):
    """Brute force: draw x_s ~ q(x_s | x0), then x_t ~ q(x_t | x_s) from the forward chain; the
    residuals x_s - mean(x_t) must be i.i.d. N(0, variance) (zero mean, the posterior variance)."""
    s_, frac = st_pair
    t = s_ + (1 - s_) * frac
    n = 4000
    g = torch.Generator().manual_seed(11)
    x0 = torch.full((n, *event), 1.5, dtype=torch.float64)
    f = lambda v: torch.full((n,), v, dtype=torch.float64)  # noqa: E731
    x_s = sched.q_sample(x0, f(s_), generator=g)
    x_t = q_step(sched, x_s, f(s_), f(t), generator=g)
    mean, var = sched.q_posterior(x0, x_t, f(t), f(s_))
    resid = (x_s - mean).numpy().ravel()
    v = float(var[0].reshape(()))
    m = resid.size
    assert abs(resid.mean()) <= 5 * math.sqrt(v / m) + 1e-12
    assert abs(resid.var() - v) <= 5 * v * math.sqrt(2 / m) + 1e-12
    # and they are uncorrelated with x_t (the posterior mean uses all of x_t's information)
    xt = x_t.numpy().ravel()
    if v > 0 and xt.std() > 0:
        corr = np.corrcoef(resid, xt)[0, 1]
        assert abs(corr) <= 5 / math.sqrt(m)


@pytest.mark.parametrize("event", EVENTS)
def test_q_posterior_scalar_and_per_sample_times_agree(event):
    s = ad.schedules.linear(100, zero_terminal_snr=True)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn((4, *event), generator=g)
    x_t = torch.randn((4, *event), generator=g)
    m1, v1 = s.q_posterior(x0, x_t, torch.tensor(0.7), torch.tensor(0.3))
    m2, v2 = s.q_posterior(x0, x_t, torch.full((4,), 0.7), torch.full((4,), 0.3))
    torch.testing.assert_close(m1, m2, rtol=0, atol=0)
    torch.testing.assert_close(v1, v2, rtol=0, atol=0)
    # per-sample times really are used per sample
    m3, v3 = s.q_posterior(x0, x_t, torch.tensor([0.7, 0.9, 0.7, 0.5]), torch.tensor([0.3, 0.3, 0.1, 0.2]))
    m4, v4 = s.q_posterior(x0[1:2], x_t[1:2], torch.tensor(0.9), torch.tensor(0.3))
    torch.testing.assert_close(m3[1:2], m4)
    torch.testing.assert_close(v3[1:2], v4)


def test_q_posterior_bad_input():
    s = ad.schedules.linear(10)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="s_"):
        s.q_posterior(x, x, torch.full((3,), 0.5), torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="s_"):
        s.q_posterior(x, x, torch.full((3,), 0.5), torch.tensor([0.1, 0.6, 0.2]))
    with pytest.raises(ValueError, match="x0"):
        s.q_posterior(torch.zeros(3, 3), x, torch.full((3,), 0.5), torch.full((3,), 0.1))
    with pytest.raises(ValueError, match=r"\bt\b"):
        s.q_posterior(x, x, torch.full((2,), 0.5), torch.full((3,), 0.1))
    with pytest.raises(ValueError, match=r"\bt\b"):
        s.q_posterior(x, x, torch.full((3,), 1.5), torch.full((3,), 0.1))
