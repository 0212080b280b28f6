"""The exact Gaussian-mixture oracle against brute-force references."""
import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings, strategies as st
from scipy import special, stats

import anydiff as ad


def random_mixture(seed: int, K: int, D: int, full: bool = True):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.2, 1.0, K)
    mu = rng.normal(0, 2, (K, D))
    if full:
        A = rng.normal(0, 0.5, (K, D, D))
        covs = A @ A.transpose(0, 2, 1) + 0.1 * np.eye(D)
    else:
        covs = rng.uniform(0.2, 1.0, K)
    return ad.oracles.GaussianMixture(w, mu, covs)


@given(seed=st.integers(0, 10_000), K=st.integers(1, 4), D=st.integers(1, 5), full=st.booleans())
@example(seed=2, K=1, D=2, full=False)  # far from the mode: a density that underflows to 0
@settings(max_examples=25, deadline=None)
def test_log_prob_matches_scipy(seed, K, D, full):
    gm = random_mixture(seed, K, D, full)
    x = torch.tensor(np.random.default_rng(seed + 1).normal(0, 3, (7, D)))
    ref = special.logsumexp([np.log(float(w)) + stats.multivariate_normal(m.numpy(), c.numpy()).logpdf(x.numpy())
                             for w, m, c in zip(gm.weights, gm.means, gm.covs)], axis=0)
    np.testing.assert_allclose(gm.log_prob(x).numpy(), np.atleast_1d(ref), rtol=1e-9, atol=1e-9)


@given(seed=st.integers(0, 10_000), K=st.integers(1, 3), D=st.integers(1, 4), full=st.booleans(),
       t=st.floats(0.0, 1.0))
@settings(max_examples=25, deadline=None)
def test_denoiser_matches_brute_force(seed, K, D, full, t):
    """E[x0 | x_t] and the score against the per-component Gaussian formulas with explicit
    matrix inverses, and the score against autograd of the noisy log-density."""
    gm = random_mixture(seed, K, D, full)
    s = ad.schedules.cosine(100)
    x_t = torch.tensor(np.random.default_rng(seed).normal(0, 2, (5, D)))
    tt = torch.full((5,), t, dtype=torch.float64)
    alpha, sigma = s.alpha_sigma(tt)
    a, sg = float(alpha[0]), float(sigma[0])
    x0_hat, score = gm.denoise(x_t, alpha, sigma)
    logw, x0s, scores = [], [], []
    for w, m, c in zip(gm.weights, gm.means, gm.covs):
        C = a**2 * c + sg**2 * torch.eye(D, dtype=torch.float64)
        Ci = torch.linalg.inv(C)
        r = x_t - a * m
        logw.append(math.log(w) + torch.distributions.MultivariateNormal(a * m, C).log_prob(x_t))
        x0s.append(m + a * (r @ Ci.T) @ c.T)
        scores.append(-(r @ Ci.T))
    resp = torch.softmax(torch.stack(logw, 1), 1)
    ref_x0 = sum(resp[:, k, None] * x0s[k] for k in range(K))
    ref_score = sum(resp[:, k, None] * scores[k] for k in range(K))
    torch.testing.assert_close(x0_hat, ref_x0, rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(score, ref_score, rtol=1e-7, atol=1e-8)
    xr = x_t.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.noisy_log_prob(xr, alpha, sigma).sum(), xr)
    torch.testing.assert_close(score, grad, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "score"])
def test_model_outputs_are_consistent(prediction):
    """The oracle model in any parameterization converts to the same x0 (shape-agnostic)."""
    gm = ad.oracles.GaussianMixture([0.5, 0.5], torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0)),
                                    [0.5, 1.0])
    s = ad.schedules.linear(200)
    x_t = torch.randn(6, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0.05, 0.95, 6, dtype=torch.float64)
    ref = gm.model(s, "x0")(x_t, t)
    out = gm.model(s, prediction)(x_t, t)
    assert out.shape == x_t.shape
    torch.testing.assert_close(ad.convert(out, prediction, "x0", x_t=x_t, t=t, schedule=s), ref)


def test_sample_moments(gen):
    gm = random_mixture(3, 3, 2, True)
    x, labels = gm.sample(200_000, gen, dtype=torch.float64, return_labels=True)
    mean = (gm.weights[:, None] * gm.means).sum(0)
    cov = sum(w * (c + torch.outer(m - mean, m - mean)) for w, m, c in zip(gm.weights, gm.means, gm.covs))
    torch.testing.assert_close(x.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.06, rtol=0.02)
    freq = torch.bincount(labels, minlength=3).double() / len(labels)
    torch.testing.assert_close(freq, gm.weights, atol=0.005, rtol=0)


def test_bad_input():
    with pytest.raises(ValueError, match="weights"):
        ad.oracles.GaussianMixture([-1.0], [[0.0]], [1.0])
    with pytest.raises(ValueError, match="covs"):
        ad.oracles.GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(ValueError, match="covs"):
        ad.oracles.GaussianMixture([1.0], [[0.0, 0.0]], [[1.0]])
    gm = ad.oracles.GaussianMixture([1.0], [[0.0, 0.0]], [1.0])
    with pytest.raises(ValueError, match="shape"):
        gm.log_prob(torch.zeros(3, 3))


def test_random_mixture_is_deterministic_with_covariances_in_the_stated_range():
    gm = ad.oracles.random_mixture(6, (0.5, 0.3, 0.2), eigenvalues=(0.04, 0.09), seed=3)
    again = ad.oracles.random_mixture(6, (0.5, 0.3, 0.2), eigenvalues=(0.04, 0.09), seed=3)
    assert torch.equal(gm.covs, again.covs) and torch.equal(gm.means, again.means)
    assert gm.covs.shape == (3, 6, 6) and torch.allclose(gm.covs, gm.covs.transpose(1, 2))
    eig = torch.linalg.eigvalsh(gm.covs)
    assert float(eig.min()) >= 0.04 - 1e-12 and float(eig.max()) <= 0.09 + 1e-12
    assert torch.allclose(gm.weights, torch.tensor([0.5, 0.3, 0.2], dtype=gm.weights.dtype))
    assert not torch.equal(ad.oracles.random_mixture(6, (0.5, 0.3, 0.2), seed=4).means, gm.means)
    for bad in [dict(eigenvalues=(0.0, 1.0)), dict(eigenvalues=(0.5, 0.1)), dict(dim=0)]:
        with pytest.raises(ValueError, match="eigenvalues|dim"):
            ad.oracles.random_mixture(**bad)
