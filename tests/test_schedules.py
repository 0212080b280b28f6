"""Property tests of anydiff.schedules against independent float64 numpy references.

References used here (written out below, never copied from the library's output):

* linear betas: ``np.linspace`` (Ho et al. 2020);
* cosine betas: Nichol & Dhariwal 2021, ``betas_for_alpha_bar`` with
  ``alpha_bar(t) = cos((t + s) / (1 + s) * pi / 2) ** 2`` and betas capped at 0.999;
* sigmoid alpha_bars: Chen 2023, "On the importance of noise scheduling", Alg. 1;
* zero terminal SNR: Lin et al. 2024, "Common diffusion noise schedules and sample steps are
  flawed", Alg. 1, in numpy;
* alpha_bars: ``np.cumprod(1 - betas)``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import anydiff as ad
from strategies import KINDS, build, schedule_specs

# ---------------------------------------------------------------------------------------------
# independent numpy references
# ---------------------------------------------------------------------------------------------


def np_linear_betas(T, beta_start=1e-4, beta_end=0.02):
    return np.linspace(beta_start, beta_end, T, dtype=np.float64)


def np_cosine_betas(T, s=0.008, max_beta=0.999):
    """Nichol & Dhariwal 2021 (improved-diffusion ``betas_for_alpha_bar``), eq. 17."""
    def alpha_bar(t):
        return math.cos((t + s) / (1 + s) * math.pi / 2) ** 2

    return np.array([min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)],
                    dtype=np.float64)


def np_sigmoid_alpha_bar(t, start=-3.0, end=3.0, tau=1.0, clip_min=1e-9):
    """Chen 2023, Alg. 1 (``sigmoid_schedule``)."""
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    v_start, v_end = sig(start / tau), sig(end / tau)
    out = sig((np.asarray(t, dtype=np.float64) * (end - start) + start) / tau)
    return np.clip((v_end - out) / (v_end - v_start), clip_min, 1.0)


def np_rescale_zero_terminal_snr(betas):
    """Lin et al. 2024, Alg. 1, verbatim in numpy."""
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    alphas_bar_sqrt = np.sqrt(alphas_cumprod)
    a0, aT = alphas_bar_sqrt[0].copy(), alphas_bar_sqrt[-1].copy()
    alphas_bar_sqrt = alphas_bar_sqrt - aT
    alphas_bar_sqrt = alphas_bar_sqrt * a0 / (a0 - aT)
    alphas_bar = alphas_bar_sqrt**2
    alphas = np.concatenate([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1.0 - alphas


def np_alpha_bars(betas):
    return np.concatenate([[1.0], np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))])


def np_log_snr_grid(ab):
    with np.errstate(divide="ignore"):
        return np.log(ab) - np.log1p(-ab)


def t64(x):
    return torch.as_tensor(x, dtype=torch.float64)


def alpha_sigma_np(s, t):
    a, sg = s.alpha_sigma(t64(t))
    return a.numpy(), sg.numpy()


FAST = settings(max_examples=40, deadline=None)

# ---------------------------------------------------------------------------------------------
# betas and alpha_bars
# ---------------------------------------------------------------------------------------------


@FAST
@given(T=st.one_of(st.integers(1, 10), st.just(1000)),
       b0=st.floats(1e-5, 0.05), width=st.floats(0.0, 0.3))
def test_linear_betas_match_linspace(T, b0, width):
    b1 = b0 + width
    s = ad.schedules.linear(T, b0, b1)
    assert s.T == T
    assert s.betas.dtype == torch.float64 and s.betas.shape == (T,)
    np.testing.assert_allclose(s.betas.numpy(), np_linear_betas(T, b0, b1), rtol=1e-13, atol=1e-16)


@FAST
@given(T=st.one_of(st.integers(1, 10), st.sampled_from([100, 1000])),
       s_off=st.sampled_from([0.008, 0.001, 0.05]))
def test_cosine_betas_match_nichol_dhariwal(T, s_off):
    s = ad.schedules.cosine(T, s=s_off)
    ref = np_cosine_betas(T, s=s_off)
    assert s.betas.shape == (T,) and s.betas.dtype == torch.float64
    assert float(s.betas.max()) <= 0.999
    np.testing.assert_allclose(s.betas.numpy(), ref, rtol=1e-9, atol=1e-14)
    # and alpha_bars follow the defining cos^2 curve f(t)/f(0) until a beta is capped
    f = lambda t: np.cos((t + s_off) / (1 + s_off) * np.pi / 2) ** 2  # noqa: E731
    k = np.arange(T + 1)
    uncapped = np.concatenate([[True], np.cumprod(ref < 0.999).astype(bool)])
    np.testing.assert_allclose(s.alpha_bars.numpy()[uncapped], (f(k / T) / f(0))[uncapped],
                               rtol=1e-9, atol=1e-15)


@FAST
@given(T=st.one_of(st.integers(1, 10), st.sampled_from([100, 1000])))
def test_sigmoid_alpha_bars_match_chen(T):
    s = ad.schedules.sigmoid(T)
    ab = s.alpha_bars.numpy()
    k = np.arange(T)
    # every step before the last follows Chen's formula exactly (no clipping is active there)
    np.testing.assert_allclose(ab[:T], np_sigmoid_alpha_bar(k / T), rtol=1e-10, atol=1e-15)
    # Chen's curve reaches 0 at t=1; the capped last beta leaves a tiny positive alpha_bar
    assert 0.0 < ab[T] <= 1e-3 * ab[T - 1] + 1e-12
    assert float(s.betas.max()) <= 0.999


@FAST
@given(sched=schedule_specs())
def test_alpha_bars_are_cumprod_of_betas(sched):
    kind, T, z, s = sched
    ab = s.alpha_bars
    assert ab.dtype == torch.float64 and ab.shape == (T + 1,)
    assert float(ab[0]) == 1.0
    np.testing.assert_allclose(ab.numpy(), np_alpha_bars(s.betas.numpy()), rtol=1e-12, atol=1e-300)
    assert np.all(np.diff(ab.numpy()) < 0), "alpha_bars must strictly decrease"
    assert bool(((s.betas > 0) & (s.betas <= 1)).all())


@FAST
@given(betas=st.lists(st.floats(1e-6, 0.9), min_size=1, max_size=12),
       last_one=st.booleans())
def test_from_betas(betas, last_one):
    b = np.array(betas + ([1.0] if last_one else []), dtype=np.float64)
    s = ad.Schedule.from_betas(b)
    assert s.T == len(b)
    np.testing.assert_array_equal(s.betas.numpy(), b)
    np.testing.assert_allclose(s.alpha_bars.numpy(), np_alpha_bars(b), rtol=1e-12, atol=0)
    assert float(s.alpha_bars[0]) == 1.0
    assert s.zero_terminal_snr == last_one
    # also from a torch tensor of another dtype and from a list
    s32 = ad.Schedule.from_betas(torch.tensor(betas, dtype=torch.float32))
    assert s32.betas.dtype == torch.float64
    s_list = ad.Schedule.from_betas(list(b))
    np.testing.assert_array_equal(s_list.betas.numpy(), b)


# ---------------------------------------------------------------------------------------------
# continuous time
# ---------------------------------------------------------------------------------------------


@FAST
@given(sched=schedule_specs())
def test_alpha_sigma_on_grid_points(sched):
    kind, T, z, s = sched
    ab = np_alpha_bars(s.betas.numpy())
    k = np.arange(T + 1)
    a, sg = alpha_sigma_np(s, k / T)
    np.testing.assert_allclose(a, np.sqrt(ab), rtol=0, atol=1e-12)
    np.testing.assert_allclose(sg, np.sqrt(1 - ab), rtol=0, atol=1e-12)
    assert a[0] == 1.0 and sg[0] == 0.0
    # one grid point at a time as a 0-d tensor, too
    j = T // 2
    a0, s0 = s.alpha_sigma(t64(j / T))
    assert a0.shape == () and s0.shape == ()
    assert abs(float(a0) - math.sqrt(ab[j])) < 1e-12


@FAST
@given(sched=schedule_specs())
def test_alpha_sigma_float32_time(sched):
    """A float32 t is k/T only up to float32 rounding: alpha matches to that precision."""
    kind, T, z, s = sched
    k = np.arange(T + 1)
    t32 = torch.tensor(k / T, dtype=torch.float32)
    a, sg = s.alpha_sigma(t32)
    assert a.dtype == torch.float64 and a.shape == t32.shape
    ab = np_alpha_bars(s.betas.numpy())
    a_ref = np.sqrt(ab)
    # |d alpha / dt| * |t32 - t| bound, from neighbouring grid points (alpha is monotone)
    slope = np.abs(np.diff(a_ref)) * T
    slope = np.maximum(np.concatenate([slope, [0]]), np.concatenate([[0], slope]))
    tol = slope * 1.2e-7 + 1e-9
    assert np.all(np.abs(a.numpy() - a_ref) <= tol + 1e-6 * (1 - a_ref) + 1e-7)
    assert np.all(np.isfinite(sg.numpy()))
    np.testing.assert_allclose(a.numpy() ** 2 + sg.numpy() ** 2, 1.0, atol=1e-12)


@FAST
@given(sched=schedule_specs(),
       t=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=16),
       shape=st.sampled_from([(-1,), (1, -1), (-1, 1)]))
def test_variance_preserving_and_shapes(sched, t, shape):
    kind, T, z, s = sched
    tt = t64(t).reshape(shape)
    a, sg = s.alpha_sigma(tt)
    assert a.shape == tt.shape and sg.shape == tt.shape
    assert a.dtype == torch.float64 and sg.dtype == torch.float64
    an, sn = a.numpy(), sg.numpy()
    assert np.all(np.isfinite(an)) and np.all(np.isfinite(sn))
    assert np.all((an >= 0) & (an <= 1) & (sn >= 0) & (sn <= 1))
    np.testing.assert_allclose(an**2 + sn**2, 1.0, rtol=0, atol=1e-12)
    a2, s2 = s.alpha2_sigma2(tt)
    np.testing.assert_allclose(a2.numpy() + s2.numpy(), 1.0, rtol=0, atol=1e-13)


@FAST
@given(sched=schedule_specs())
def test_alpha_decreasing_and_continuous(sched):
    kind, T, z, s = sched
    grid = np.arange(T + 1) / T
    # dense time points: grid, their neighbours, and uniform fill-in
    t = np.unique(np.clip(np.concatenate([grid, grid + 1e-10, grid - 1e-10,
                                          np.linspace(0, 1, 2001)]), 0, 1))
    a, sg = alpha_sigma_np(s, t)
    assert np.all(np.diff(a) <= 1e-15), "alpha_t must not increase with t"
    assert np.all(np.diff(sg) >= -1e-15), "sigma_t must not decrease with t"
    # strictly decreasing across every step of the chain
    ag, _ = alpha_sigma_np(s, grid)
    assert np.all(np.diff(ag) < 0)
    # continuity at every grid point: one-sided values within 1e-10 / T of a step apart
    eps = 1e-7 / T
    ga = alpha_sigma_np(s, grid)[0]
    left = alpha_sigma_np(s, np.clip(grid - eps, 0, 1))[0]
    right = alpha_sigma_np(s, np.clip(grid + eps, 0, 1))[0]
    jump = np.maximum(np.abs(left - ga), np.abs(right - ga))
    # allowed change over eps: alpha_t varies by at most |diff| over a whole step
    step = np.abs(np.diff(np.sqrt(np_alpha_bars(s.betas.numpy()))))
    bound = np.maximum(np.concatenate([step, [0]]), np.concatenate([[0], step]))
    # sqrt makes alpha steep near alpha=0 (zero terminal SNR): bound by sqrt(eps) there
    assert np.all(jump <= bound * 1e-6 + np.sqrt(eps * T * np.max(step) + 1e-30) + 1e-12)


@FAST
@given(sched=schedule_specs(min_T=2), data=st.data())
def test_log_snr_linear_between_interior_grid_points(sched, data):
    kind, T, z, s = sched
    last_interior = T - 2 if z else T - 1  # intervals [k/T, (k+1)/T] with both ends finite
    assume(last_interior >= 1)
    k = data.draw(st.integers(1, last_interior), label="k")
    f = data.draw(st.one_of(st.just(0.5), st.floats(0.0, 1.0)), label="f")
    lam = np_log_snr_grid(np_alpha_bars(s.betas.numpy()))
    t = (k + f) / T
    got = float(s.log_snr(t64(t)))
    want = (1 - f) * lam[k] + f * lam[k + 1]
    assert abs(got - want) <= 1e-9 * (1 + abs(want))
    # midpoint of the interval = mean of its end log-SNRs
    mid = float(s.log_snr(t64((k + 0.5) / T)))
    assert abs(mid - 0.5 * (lam[k] + lam[k + 1])) <= 1e-9 * (1 + abs(lam[k]) + abs(lam[k + 1]))


@FAST
@given(sched=schedule_specs(), f=st.floats(0.0, 1.0))
def test_end_intervals_interpolate_the_vanishing_variance(sched, f):
    """Documented in anydiff.schedules: on [0, 1/T] sigma^2 is linear in t; on the last interval
    of a zero-terminal-SNR schedule alpha^2 is linear in t."""
    kind, T, z, s = sched
    ab = np_alpha_bars(s.betas.numpy())
    # t within 1e-9 / T of a grid point is snapped onto it (schedules.SNAP): allow that much
    snap = 1e-9
    a2, s2 = s.alpha2_sigma2(t64(f / T))
    assert abs(float(s2) - f * (1 - ab[1])) <= snap * (1 - ab[1]) + 1e-13
    if z:
        a2, s2 = s.alpha2_sigma2(t64((T - 1 + f) / T))
        assert abs(float(a2) - (1 - f) * ab[T - 1]) <= snap * ab[T - 1] + 1e-13


@FAST
@given(sched=schedule_specs())
def test_log_snr_values(sched):
    kind, T, z, s = sched
    assert float(s.log_snr(t64(0.0))) == math.inf
    end = float(s.log_snr(t64(1.0)))
    if z:
        assert end == -math.inf
    else:
        ab_T = np_alpha_bars(s.betas.numpy())[-1]
        assert abs(end - (math.log(ab_T) - math.log1p(-ab_T))) < 1e-9 * (1 + abs(end))


@FAST
@given(sched=schedule_specs(), t=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_t_of_log_snr_inverts_log_snr(sched, t):
    kind, T, z, s = sched
    tt = torch.cat([t64(t), t64(np.arange(T + 1) / T)])
    back = s.t_of_log_snr(s.log_snr(tt))
    assert back.dtype == torch.float64 and back.shape == tt.shape
    np.testing.assert_allclose(back.numpy(), tt.numpy(), rtol=0, atol=1e-9)


@FAST
@given(sched=schedule_specs(), data=st.data())
def test_beta_matches_finite_difference(sched, data):
    kind, T, z, s = sched
    k = data.draw(st.integers(0, T - 1), label="k")
    f = data.draw(st.floats(0.1, 0.9), label="f")
    t = (k + f) / T
    h = 1e-5 / T

    def neg_log_alpha2(x):
        a2, _ = s.alpha2_sigma2(t64(x))
        return -math.log(float(a2))

    fd = (neg_log_alpha2(t + h) - neg_log_alpha2(t - h)) / (2 * h)
    got = float(s.beta(t64(t)))
    assert got > 0
    assert abs(got - fd) <= 1e-5 * abs(fd) + 1e-8


@FAST
@given(sched=schedule_specs(ztsnr=False))
def test_beta_on_grid_is_the_rate_of_the_interval_to_the_right(sched):
    kind, T, z, s = sched
    k = np.arange(T)
    got = s.beta(t64(k / T)).numpy()
    mid = s.beta(t64((k + 1e-6) / T)).numpy()
    np.testing.assert_allclose(got, mid, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# zero terminal SNR
# ---------------------------------------------------------------------------------------------


@FAST
@given(kind=st.sampled_from(KINDS), T=st.one_of(st.integers(2, 10), st.just(1000)))
def test_zero_terminal_snr_matches_lin_et_al(kind, T):
    base = build(kind, T, False)
    z1 = build(kind, T, True)
    z2 = base.rescale_zero_terminal_snr()
    z3 = ad.schedules.rescale_zero_terminal_snr(base)
    ref_betas = np_rescale_zero_terminal_snr(base.betas.numpy())
    for zs in (z1, z2, z3):
        assert zs.zero_terminal_snr and zs.T == T
        np.testing.assert_allclose(zs.betas.numpy(), ref_betas, rtol=1e-9, atol=1e-12)
        ab = zs.alpha_bars.numpy()
        assert ab[-1] == 0.0 and ab[0] == 1.0
        assert float(zs.betas[-1]) == 1.0
        # the first alpha_bar is kept
        assert abs(ab[1] - float(base.alpha_bars[1])) <= 1e-12
        # sqrt(alpha_bars[1:]) is an affine map of the original's: sq_new = c (sq_old - sq_old[T])
        sq_old = np.sqrt(base.alpha_bars.numpy()[1:])
        c = sq_old[0] / (sq_old[0] - sq_old[-1])
        np.testing.assert_allclose(np.sqrt(ab[1:]), c * (sq_old - sq_old[-1]), rtol=1e-9, atol=1e-12)
        # x at t = 1 is pure noise
        a1, s1 = zs.alpha_sigma(t64(1.0))
        assert float(a1) == 0.0 and float(s1) == 1.0
        assert np.all(np.isfinite(zs.alpha_sigma(t64(np.linspace(0, 1, 101)))[0].numpy()))


def test_zero_terminal_snr_examples():
    for T in (2, 3, 1000):
        s = ad.schedules.linear(T, zero_terminal_snr=True)
        assert float(s.alpha_bars[-1]) == 0.0
    assert not ad.schedules.linear(10).zero_terminal_snr
    assert ad.Schedule.from_betas([0.1, 0.2, 1.0]).zero_terminal_snr


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    torch.tensor([-0.1], dtype=torch.float64),
    torch.tensor([1.0000001], dtype=torch.float64),
    torch.tensor([0.5, 2.0]),
    torch.tensor(float("nan")),
    torch.tensor([0.2, float("nan")]),
    torch.tensor([float("inf")]),
    torch.tensor([0, 1]),
    torch.tensor(1),
])
@pytest.mark.parametrize("method", ["alpha_sigma", "log_snr", "beta", "alpha2_sigma2"])
def test_bad_time_raises_value_error_naming_t(bad, method):
    s = ad.schedules.linear(10)
    with pytest.raises(ValueError, match=r"\bt\b"):
        getattr(s, method)(bad)


@pytest.mark.parametrize("t", [0.5, [0.5], np.float64(0.5), np.array([0.25, 0.5])])
@pytest.mark.parametrize("method", ["alpha_sigma", "log_snr", "beta", "alpha2_sigma2"])
def test_non_tensor_time_is_a_value_error_or_works(t, method):
    """The contract asks for a float tensor t; anything else must either raise a ValueError
    naming t (as ``_utils.check_time`` does) or give the tensor answer -- never an
    AttributeError from deep inside."""
    s = ad.schedules.linear(10)
    try:
        got = getattr(s, method)(t)
    except ValueError as exc:
        assert "t" in str(exc)
        return
    want = getattr(s, method)(t64(t))
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_allclose(np.asarray(g), w.numpy(), rtol=1e-12)


@pytest.mark.parametrize("T", [0, -1, 2.5, 10.0, "10", None, True])
@pytest.mark.parametrize("ctor", [ad.schedules.linear, ad.schedules.cosine, ad.schedules.sigmoid])
def test_bad_T_raises_value_error_naming_T(ctor, T):
    with pytest.raises(ValueError, match=r"\bT\b"):
        ctor(T)


@pytest.mark.parametrize("betas", [
    [0.0, 0.1], [0.1, 0.0], [-0.1], [1.5], [0.1, 1.2], [1.0, 0.5], [0.1, float("nan")],
    [float("inf")], [], [[0.1, 0.2]],
])
def test_bad_betas_raise_value_error_naming_betas(betas):
    with pytest.raises(ValueError, match="betas"):
        ad.Schedule.from_betas(torch.tensor(betas, dtype=torch.float64))


@pytest.mark.parametrize("kwargs, name", [
    (dict(beta_start=0.0), "beta_start"),
    (dict(beta_start=0.1, beta_end=0.05), "beta_end"),
    (dict(beta_end=1.0), "beta_end"),
])
def test_bad_linear_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ad.schedules.linear(10, **kwargs)


def test_bad_cosine_and_sigmoid_arguments():
    with pytest.raises(ValueError, match=r"\bs\b"):
        ad.schedules.cosine(10, s=0.0)
    with pytest.raises(ValueError, match="max_beta"):
        ad.schedules.cosine(10, max_beta=1.5)
    with pytest.raises(ValueError, match="tau"):
        ad.schedules.sigmoid(10, tau=0.0)
    with pytest.raises(ValueError, match="end"):
        ad.schedules.sigmoid(10, start=3.0, end=-3.0)


def test_zero_terminal_snr_needs_two_steps():
    with pytest.raises(ValueError, match="T"):
        ad.schedules.linear(1, zero_terminal_snr=True)


def test_t_of_log_snr_rejects_nan():
    with pytest.raises(ValueError, match="lam"):
        ad.schedules.linear(10).t_of_log_snr(torch.tensor([0.0, float("nan")]))
