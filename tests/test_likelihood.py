"""Probability-flow ODE log-likelihood against the exact Gaussian-mixture log-density."""
import math

import pytest
import torch

import anydiff as ad

COS = ad.schedules.cosine(1000)


def ring(n_modes=8, radius=2.0, std=0.3):
    angles = torch.arange(n_modes, dtype=torch.float64) * 2 * math.pi / n_modes
    means = radius * torch.stack([angles.cos(), angles.sin()], 1)
    return ad.oracles.GaussianMixture(torch.ones(n_modes), means, torch.full((n_modes,), std))


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "score"])
def test_exact_divergence_matches_true_density_2d(prediction):
    gm = ring()
    x = gm.sample(64, torch.Generator().manual_seed(0), dtype=torch.float64)
    ll = ad.log_likelihood(gm.model(COS, prediction), x, schedule=COS, prediction=prediction)
    assert ll.shape == (64,) and ll.dtype == torch.float64
    assert (ll - gm.log_prob(x)).abs().max() < 0.01


def test_full_covariance_mixture_in_5d_and_event_shapes():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(3, 6, 6, generator=g, dtype=torch.float64) * 0.4
    covs = A @ A.transpose(1, 2) + 0.2 * torch.eye(6, dtype=torch.float64)
    means = torch.randn(3, 2, 3, generator=g, dtype=torch.float64) * 2
    gm = ad.oracles.GaussianMixture([0.2, 0.3, 0.5], means, covs)  # events of shape (2, 3)
    x = gm.sample(6, g, dtype=torch.float64)
    assert x.shape == (6, 2, 3)
    ll = ad.log_likelihood(gm.model(COS), x, schedule=COS)
    assert (ll - gm.log_prob(x)).abs().max() < 0.01


def test_gaussian_data_need_no_ode():
    """N(0, I) data are invariant under the VP process: the ODE is still and log p is exact."""
    gm = ad.oracles.GaussianMixture([1.0], [[0.0, 0.0, 0.0]], [1.0])
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    ll = ad.log_likelihood(gm.model(ad.schedules.linear()), x, schedule=ad.schedules.linear())
    torch.testing.assert_close(ll, gm.log_prob(x), atol=1e-6, rtol=0)


def test_hutchinson_is_unbiased_and_more_probes_help():
    gm = ring()
    x = gm.sample(48, torch.Generator().manual_seed(2), dtype=torch.float64)
    true = gm.log_prob(x)
    errs = {}
    for probes in (1, 16):
        ll = ad.log_likelihood(gm.model(COS), x, schedule=COS, divergence="hutchinson", n_probes=probes,
                               generator=torch.Generator().manual_seed(3))
        errs[probes] = ll - true
    # mean error near zero (unbiased), spread shrinking with probes
    assert abs(float(errs[16].mean())) < 0.05
    assert float(errs[16].abs().mean()) < float(errs[1].abs().mean())


def test_linear_schedule_prior_mismatch_is_small():
    """A linear schedule leaves alpha_1^2 = 4e-5 of signal at t=1; taking N(0, I) there costs
    less than 0.02 nats on unit-scale data (the cosine schedule: < 0.01, tested above)."""
    gm = ring()
    lin = ad.schedules.linear()
    x = gm.sample(32, torch.Generator().manual_seed(4), dtype=torch.float64)
    ll = ad.log_likelihood(gm.model(lin), x, schedule=lin)
    assert (ll - gm.log_prob(x)).abs().mean() < 0.02


def test_float32_inputs():
    gm = ring()
    x = gm.sample(16, torch.Generator().manual_seed(5))
    ll = ad.log_likelihood(gm.model(COS), x, schedule=COS)
    assert (ll - gm.log_prob(x)).abs().max() < 0.02


@pytest.mark.parametrize("kwargs,match", [
    (dict(divergence="skilling"), "divergence"),
    (dict(n_probes=0, divergence="hutchinson"), "n_probes"),
    (dict(prediction="noise"), "prediction"),
    (dict(t_min=0.0), "t_min"),
])
def test_bad_input(kwargs, match):
    gm = ring()
    with pytest.raises(ValueError, match=match):
        ad.log_likelihood(gm.model(COS), torch.zeros(2, 2), schedule=COS, **kwargs)


def test_non_finite_data():
    gm = ring()
    with pytest.raises(ValueError, match="x"):
        ad.log_likelihood(gm.model(COS), torch.tensor([[0.0, float("nan")]]), schedule=COS)


def test_a_rows_value_does_not_depend_on_its_batch():
    """Per-sample step sizes: scoring a subset gives the same numbers as scoring the whole set."""
    gm = ring()
    x = gm.sample(12, torch.Generator().manual_seed(6), dtype=torch.float64)
    whole = ad.log_likelihood(gm.model(COS), x, schedule=COS)
    part = ad.log_likelihood(gm.model(COS), x[[5, 2, 9]], schedule=COS)
    torch.testing.assert_close(part, whole[[5, 2, 9]], rtol=0, atol=1e-10)


def test_finished_rows_are_not_evaluated_and_conditions_follow_their_rows():
    """Each row of a batch is shifted by its own condition c: log p(x | c) = log p_ring(x - c).
    The model sees only the unfinished rows (with their own conditions), and every row's value
    equals that row scored alone."""
    gm = ring()
    base = gm.model(COS)
    calls = []

    def shifted(x_t, t, cond):
        calls.append(x_t.shape[0])
        assert cond.shape == (x_t.shape[0], 2)
        alpha, _ = COS.alpha_sigma(t)
        return base(x_t - alpha[:, None].to(x_t.dtype) * cond, t)

    g = torch.Generator().manual_seed(3)
    shift = torch.randn(10, 2, generator=g, dtype=torch.float64) * 3
    x = gm.sample(10, g, dtype=torch.float64) + shift
    x[0] += 4.0  # a far outlier takes more solver steps than the rest
    ll = ad.log_likelihood(shifted, x, schedule=COS, cond=shift)
    torch.testing.assert_close(ll, gm.log_prob(x - shift), rtol=0, atol=0.01)
    assert min(calls) < 10 and sum(calls) < 10 * len(calls)  # later calls skipped finished rows
    calls.clear()
    alone = torch.stack([ad.log_likelihood(shifted, x[i:i + 1], schedule=COS, cond=shift[i:i + 1])[0]
                         for i in (0, 4)])
    torch.testing.assert_close(alone, ll[[0, 4]], rtol=0, atol=1e-10)
