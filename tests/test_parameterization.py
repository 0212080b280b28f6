"""Property tests of ``anydiff.convert`` against the defining relations, in float64 numpy:

``x_t = alpha x0 + sigma eps``, ``v = alpha eps - sigma x0`` (Salimans & Ho 2022),
``score = -eps / sigma`` (Tweedie), ``alpha^2 + sigma^2 = 1``.

The reference conversion is brute force: the 2x2 linear system ``[x_t; pred] = A [x0; eps]`` is
solved per sample with numpy. Tolerances are a few ulps of the size of the terms of that linear
map, so they follow the conditioning of each conversion (dividing by a small alpha or sigma).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import anydiff as ad
from strategies import DTYPES, EVENTS, KINDS, bcast, build, schedules
from anydiff.parameterization import PREDICTIONS

PAIRS = list(itertools.permutations(PREDICTIONS, 2))
FAST = settings(max_examples=40, deadline=None)


def consistent_set(x0, eps, alpha, sigma):
    """x_t and the four predictions of the pair (x0, eps), numpy float64; alpha, sigma (B,)."""
    a, s = bcast(alpha, x0.ndim), bcast(sigma, x0.ndim)
    x_t = a * x0 + s * eps
    return x_t, {"x0": x0, "eps": eps, "v": a * eps - s * x0, "score": -eps / s}


@st.composite
def problems(draw, t_lo=1e-6, t_hi=1 - 1e-6):
    sched = draw(schedules())
    event = draw(st.sampled_from(EVENTS))
    B = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from(DTYPES))
    scalar_t = draw(st.booleans())
    if scalar_t:
        t = np.full(B, draw(st.floats(t_lo, t_hi)))
    else:
        t = np.array(draw(st.lists(st.floats(t_lo, t_hi), min_size=B, max_size=B)))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x0 = 2 * rng.standard_normal((B, *event))
    eps = rng.standard_normal((B, *event))
    t_torch = torch.tensor(t[0] if scalar_t else t, dtype=torch.float64)
    return sched, dtype, t_torch, t, x0, eps


def coeffs(sched, t):
    a, s = sched.alpha_sigma(torch.as_tensor(t, dtype=torch.float64))
    return a.numpy(), s.numpy()


def row(kind, alpha, sigma):
    """The defining linear form of a prediction kind in the (x0, eps) basis, shape (B, 2)."""
    one, zero = np.ones_like(alpha), np.zeros_like(alpha)
    return {"x0": np.stack([one, zero], -1),
            "eps": np.stack([zero, one], -1),
            "v": np.stack([-sigma, alpha], -1),
            "score": np.stack([zero, -1 / sigma], -1)}[kind]


def ref_coeffs(src, dst, alpha, sigma):
    """Brute force: solve the 2x2 system [x_t; pred] = A [x0; eps] per sample with numpy and
    express dst = c_xt x_t + c_pred pred. Returns (c_xt, c_pred), each (B,)."""
    A = np.stack([np.stack([alpha, sigma], -1), row(src, alpha, sigma)], -2)  # (B, 2, 2)
    c = np.einsum("bi,bij->bj", row(dst, alpha, sigma), np.linalg.inv(A))
    return c[:, 0], c[:, 1]


def ref_convert(pred, src, dst, x_t, alpha, sigma):
    """Reference conversion and the size of its terms (for the rounding tolerance)."""
    c_xt, c_pred = ref_coeffs(src, dst, alpha, sigma)
    n = pred.ndim
    out = bcast(c_xt, n) * x_t + bcast(c_pred, n) * pred
    terms = np.abs(bcast(c_xt, n) * x_t) + np.abs(bcast(c_pred, n) * pred)
    return out, terms, c_pred


K = 32  # ulps allowed per unit of term size


def T(x, dtype):
    return torch.as_tensor(x, dtype=torch.float64).to(dtype)


def rounded(x, dtype):
    """x as the library sees it (rounded to dtype), back in float64 numpy."""
    return T(x, dtype).double().numpy()


@FAST
@given(prob=problems(), pair=st.sampled_from(PAIRS))
def test_convert_matches_brute_force_linear_solve(prob, pair):
    sched, dtype, t_torch, t, x0, eps = prob
    src, dst = pair
    alpha, sigma = coeffs(sched, t)
    x_t, preds = consistent_set(x0, eps, alpha, sigma)
    rng = np.random.default_rng(1)
    pred = preds[src] * rng.uniform(0.5, 1.5, x0.shape)  # any prediction, consistent or not
    x_t_r, pred_r = rounded(x_t, dtype), rounded(pred, dtype)
    want, terms, _ = ref_convert(pred_r, src, dst, x_t_r, alpha, sigma)
    got = ad.convert(T(pred, dtype), source=src, target=dst, x_t=T(x_t, dtype), t=t_torch,
                     schedule=sched)
    assert got.shape == x0.shape and got.dtype == dtype
    err = np.abs(got.double().numpy() - want)
    tol = K * torch.finfo(dtype).eps * terms + np.finfo(np.float64).tiny
    assert np.all(err <= tol), (src, dst, float((err / tol).max()))


@FAST
@given(prob=problems())
def test_consistent_set_maps_onto_itself(prob):
    sched, dtype, t_torch, t, x0, eps = prob
    alpha, sigma = coeffs(sched, t)
    x_t, preds = consistent_set(x0, eps, alpha, sigma)
    x_t_torch = T(x_t, dtype)
    for src, dst in itertools.product(PREDICTIONS, PREDICTIONS):
        got = ad.convert(T(preds[src], dtype), source=src, target=dst, x_t=x_t_torch, t=t_torch,
                         schedule=sched)
        assert got.shape == x0.shape and got.dtype == dtype, (src, dst)
        # rounding the inputs to dtype perturbs them by an ulp; propagate that through the map
        _, terms, _ = ref_convert(preds[src], src, dst, x_t, alpha, sigma)
        tol = K * torch.finfo(dtype).eps * (terms + np.abs(preds[dst]))
        err = np.abs(got.double().numpy() - preds[dst])
        assert np.all(err <= tol), (src, dst, float((err / tol).max()))


@FAST
@given(prob=problems(), pair=st.sampled_from(PAIRS))
def test_round_trip_between_every_pair(prob, pair):
    sched, dtype, t_torch, t, x0, eps = prob
    src, dst = pair
    alpha, sigma = coeffs(sched, t)
    x_t, preds = consistent_set(x0, eps, alpha, sigma)
    # perturb the prediction so that it is NOT the consistent one: round trips must still hold
    rng = np.random.default_rng(0)
    pred = preds[src] + rng.standard_normal(x0.shape) * (1 + np.abs(preds[src]))
    x_t_torch, pred_torch = T(x_t, dtype), T(pred, dtype)
    mid = ad.convert(pred_torch, source=src, target=dst, x_t=x_t_torch, t=t_torch, schedule=sched)
    back = ad.convert(mid, source=dst, target=src, x_t=x_t_torch, t=t_torch, schedule=sched)
    assert back.dtype == dtype and back.shape == pred_torch.shape
    x_t_r, pred_r = rounded(x_t, dtype), rounded(pred, dtype)
    mid_ref, terms_ab, _ = ref_convert(pred_r, src, dst, x_t_r, alpha, sigma)
    _, terms_ba, c_back = ref_convert(mid_ref, dst, src, x_t_r, alpha, sigma)
    # the first conversion's rounding is amplified by the second's coefficient on its input
    tol = K * torch.finfo(dtype).eps * (bcast(np.abs(c_back), x0.ndim) * terms_ab + terms_ba)
    err = np.abs(back.double().numpy() - pred_r)
    assert np.all(err <= tol), float((err / tol).max())


@FAST
@given(prob=problems())
def test_score_is_minus_eps_over_sigma(prob):
    sched, dtype, t_torch, t, x0, eps = prob
    alpha, sigma = coeffs(sched, t)
    x_t, _ = consistent_set(x0, eps, alpha, sigma)
    # any eps, consistent or not
    got = ad.convert(T(eps, dtype), source="eps", target="score", x_t=T(x_t, dtype), t=t_torch,
                     schedule=sched).double().numpy()
    want = -eps / bcast(sigma, eps.ndim)
    np.testing.assert_allclose(got, want, rtol=8 * torch.finfo(dtype).eps, atol=1e-300)
    back = ad.convert(T(want, dtype), source="score", target="eps", x_t=T(x_t, dtype), t=t_torch,
                      schedule=sched).double().numpy()
    np.testing.assert_allclose(back, eps, rtol=16 * torch.finfo(dtype).eps,
                               atol=16 * torch.finfo(dtype).eps)


@FAST
@given(prob=problems(t_lo=1e-3, t_hi=1.0))
def test_v_is_a_rotation(prob):
    """(x0, eps) -> (v, x_t) is the rotation by phi = atan2(sigma, alpha): norms are preserved,
    so the v <-> (x0, eps) conversions are exact in either direction, at any t."""
    sched, dtype, t_torch, t, x0, eps = prob
    alpha, sigma = coeffs(sched, t)
    x_t, preds = consistent_set(x0, eps, alpha, sigma)
    for dst, want in (("x0", x0), ("eps", eps)):
        got = ad.convert(T(preds["v"], dtype), source="v", target=dst, x_t=T(x_t, dtype), t=t_torch,
                         schedule=sched).double().numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=16 * torch.finfo(dtype).eps * 10)
    np.testing.assert_allclose(x_t**2 + preds["v"] ** 2, x0**2 + eps**2, rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T_steps", [2, 10, 1000])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("event", EVENTS)
def test_v_stays_finite_at_t1_with_zero_terminal_snr(kind, T_steps, dtype, event):
    sched = build(kind, T_steps, True)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn((3, *event), generator=g, dtype=torch.float64)
    eps = torch.randn((3, *event), generator=g, dtype=torch.float64)
    t1 = torch.ones(3, dtype=torch.float64)
    a, s = sched.alpha_sigma(t1)
    assert float(a.max()) == 0.0 and float(s.min()) == 1.0
    x_t = eps.to(dtype)  # alpha = 0, sigma = 1
    v = (-x0).to(dtype)  # v = alpha eps - sigma x0
    for dst, want in (("x0", x0), ("eps", eps), ("score", -eps)):
        got = ad.convert(v, source="v", target=dst, x_t=x_t, t=t1, schedule=sched)
        assert torch.isfinite(got).all(), dst
        torch.testing.assert_close(got.double(), want, rtol=0, atol=4 * torch.finfo(dtype).eps)
    # x0 -> v and x0 -> score, x0 -> eps are also finite (no division by alpha is needed)
    for dst, want in (("v", -x0), ("eps", eps), ("score", -eps)):
        got = ad.convert(x0.to(dtype), source="x0", target=dst, x_t=x_t, t=t1, schedule=sched)
        assert torch.isfinite(got).all(), dst
        torch.testing.assert_close(got.double(), want, rtol=0, atol=4 * torch.finfo(dtype).eps)
    # scalar t = 1 too
    got = ad.convert(v, source="v", target="x0", x_t=x_t, t=torch.tensor(1.0, dtype=torch.float64),
                     schedule=sched)
    torch.testing.assert_close(got.double(), x0, rtol=0, atol=4 * torch.finfo(dtype).eps)


def test_identity_and_per_sample_t():
    sched = ad.schedules.cosine(100)
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(4, 3, generator=g)
    pred = torch.randn(4, 3, generator=g)
    for p in PREDICTIONS:
        assert torch.equal(ad.convert(pred, source=p, target=p, x_t=x_t, t=torch.full((4,), 0.5),
                                      schedule=sched), pred)
    # per-sample t: row i equals the conversion of row i alone
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])
    full = ad.convert(pred, source="eps", target="x0", x_t=x_t, t=t, schedule=sched)
    for i in range(4):
        one = ad.convert(pred[i:i + 1], source="eps", target="x0", x_t=x_t[i:i + 1], t=t[i], schedule=sched)
        torch.testing.assert_close(full[i:i + 1], one)


@pytest.mark.parametrize("bad", ["epsilon", "x_0", "", "V", None, "noise"])
def test_unknown_names_raise_value_error_naming_the_argument(bad):
    sched = ad.schedules.linear(10)
    x = torch.zeros(2, 3)
    t = torch.full((2,), 0.5)
    with pytest.raises(ValueError, match="source"):
        ad.convert(x, source=bad, target="x0", x_t=x, t=t, schedule=sched)
    with pytest.raises(ValueError, match="target"):
        ad.convert(x, source="eps", target=bad, x_t=x, t=t, schedule=sched)


def test_shape_mismatch_and_bad_t_raise_value_error():
    sched = ad.schedules.linear(10)
    t = torch.full((2,), 0.5)
    with pytest.raises(ValueError, match="shape"):
        ad.convert(torch.zeros(2, 3), source="eps", target="x0", x_t=torch.zeros(2, 4), t=t, schedule=sched)
    with pytest.raises(ValueError, match="shape"):
        ad.convert(torch.zeros(2, 3), source="eps", target="x0", x_t=torch.zeros(2, 3, 1), t=t,
                   schedule=sched)
    with pytest.raises(ValueError, match=r"\bt\b"):
        ad.convert(torch.zeros(2, 3), source="eps", target="x0", x_t=torch.zeros(2, 3),
                   t=torch.full((3,), 0.5), schedule=sched)
    with pytest.raises(ValueError, match=r"\bt\b"):
        ad.convert(torch.zeros(2, 3), source="eps", target="x0", x_t=torch.zeros(2, 3),
                   t=torch.full((2,), 1.5), schedule=sched)
    with pytest.raises(ValueError, match=r"\bt\b"):
        ad.convert(torch.zeros(2, 3), source="eps", target="x0", x_t=torch.zeros(2, 3),
                   t=torch.tensor([0, 1]), schedule=sched)
