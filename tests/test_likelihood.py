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


# -- the reference problems of benchmarks/samplers.py and benchmarks/likelihood.py --------------

def ring_2d():
    """Eight Gaussians, std 0.1, on a circle of radius 2."""
    return ad.datasets.eight_gaussians_mixture(noise=0.1)


def mixture_16d():
    """D = 16, K = 5, random full covariances with eigenvalues log-uniform in [0.01, 0.25]."""
    return ad.oracles.random_mixture()


@pytest.mark.parametrize("problem,n", [("ring_2d", 128), ("mixture_16d", 64)])
def test_default_tolerances_within_001_nats_on_the_reference_problems(problem, n):
    """The defaults (rtol = atol = 1e-3, in the angle time with the Gauss-Legendre log-density
    quadrature): every row within 0.01 nats of the exact log-density, the mean well within."""
    gm = ring_2d() if problem == "ring_2d" else mixture_16d()
    x = gm.sample(n, torch.Generator().manual_seed(11), dtype=torch.float64)
    err = ad.log_likelihood(gm.model(COS), x, schedule=COS) - gm.log_prob(x)
    assert float(err.abs().mean()) < 0.003
    assert float(err.abs().max()) < 0.01


def test_default_tolerances_take_few_model_calls():
    """The solver's cost: at most ~100 model calls per row on the 16-D mixture (was ~130 calls,
    each with the divergence, at the former rtol = atol = 1e-5)."""
    gm = mixture_16d()
    x = gm.sample(32, torch.Generator().manual_seed(12), dtype=torch.float64)
    model, rows = gm.model(COS), []

    def counting(x_t, t, cond=None):
        rows.append(x_t.shape[0])
        return model(x_t, t, cond)

    ad.log_likelihood(counting, x, schedule=COS)
    assert sum(rows) / 32 < 110


def test_tighter_tolerances_converge():
    gm = ring_2d()
    x = gm.sample(24, torch.Generator().manual_seed(13), dtype=torch.float64)
    err = {tol: (ad.log_likelihood(gm.model(COS), x, schedule=COS, rtol=tol, atol=tol) - gm.log_prob(x)).abs().mean()
           for tol in (1e-2, 1e-5)}
    assert float(err[1e-5]) < 2e-4 and float(err[1e-5]) < float(err[1e-2])


def small_net(D=3, seed=0):
    torch.manual_seed(seed)
    net = ad.nn.ResidualMLP(D, hidden=32, depth=2, fourier_features=4).double().eval()
    for p in net.parameters():  # the output layer starts at zero: give it weights
        torch.nn.init.normal_(p, std=0.3)
    return net


def test_one_pass_divergence_equals_the_loop_and_the_jacobian_trace():
    from anydiff.likelihood import _vjp_rows

    D, n = 3, 5
    net = small_net(D)
    x = torch.randn(n, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.full((n,), 0.3, dtype=torch.float64)
    fn = lambda z: net(z, t)  # noqa: E731
    basis = torch.eye(D, dtype=torch.float64)[:, None, :].expand(D, n, D)
    out1, vjp1 = _vjp_rows(fn, x, basis, one_pass=True)
    out0, vjp0 = _vjp_rows(fn, x, basis, one_pass=False)
    torch.testing.assert_close(out1, out0, rtol=0, atol=1e-12)
    torch.testing.assert_close(vjp1, vjp0, rtol=0, atol=1e-10)
    trace = (vjp1 * basis).sum((0, 2))
    brute = torch.stack([torch.trace(torch.autograd.functional.jacobian(lambda z: net(z[None], t[:1])[0], x[i]))
                         for i in range(n)])
    torch.testing.assert_close(trace, brute, rtol=0, atol=1e-10)


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_one_pass_log_likelihood_equals_the_loop(monkeypatch, divergence):
    import anydiff.likelihood as lik

    net = small_net(2, seed=1)
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    kw = dict(schedule=COS, prediction="v", divergence=divergence, n_probes=3, rtol=1e-2, atol=1e-2)
    loop = ad.log_likelihood(net, x, generator=torch.Generator().manual_seed(2), **kw)
    monkeypatch.setattr(lik, "ONE_PASS_DIVERGENCE", True)
    one = ad.log_likelihood(net, x, generator=torch.Generator().manual_seed(2), **kw)
    torch.testing.assert_close(one, loop, rtol=0, atol=1e-10)


class _Square(torch.autograd.Function):
    """An old-style autograd.Function (no setup_context): torch.func cannot transform it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


def test_one_pass_falls_back_to_the_loop_for_models_torch_func_cannot_transform(monkeypatch):
    import anydiff.likelihood as lik

    gm = ring()
    base = gm.model(COS)

    def model(x_t, t, cond=None):  # the exact denoiser, through a custom autograd.Function
        return base(x_t, t) + 0.0 * _Square.apply(x_t)

    x = gm.sample(8, torch.Generator().manual_seed(7), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="setup_context"):
        lik._vjp_rows(lambda z: _Square.apply(z), x, torch.eye(2, dtype=torch.float64)[:, None, :].expand(2, 8, 2),
                      one_pass=True)
    monkeypatch.setattr(lik, "ONE_PASS_DIVERGENCE", True)
    ll = ad.log_likelihood(model, x, schedule=COS)
    monkeypatch.setattr(lik, "ONE_PASS_DIVERGENCE", False)
    torch.testing.assert_close(ll, ad.log_likelihood(model, x, schedule=COS), rtol=0, atol=1e-10)
    torch.testing.assert_close(ll, ad.log_likelihood(base, x, schedule=COS), rtol=0, atol=1e-10)


def test_dense_output_and_gauss_weights():
    """The dense output is exact for quartics; the 3-point Gauss-Legendre rule for quintics."""
    from anydiff.likelihood import _DENSE, _GAUSS_NODES, _GAUSS_WEIGHTS

    c = torch.tensor([0.3, -1.0, 2.0, 0.5, -0.7], dtype=torch.float64)
    p = lambda s: sum(ci * s**i for i, ci in enumerate(c))  # noqa: E731
    dp = lambda s: sum(i * ci * s ** (i - 1) for i, ci in enumerate(c) if i)  # noqa: E731
    values = torch.stack([p(torch.tensor(0.0)), p(torch.tensor(1.0)), p(torch.tensor(0.5)),
                          dp(torch.tensor(0.0)), dp(torch.tensor(1.0))]).double()
    torch.testing.assert_close(_DENSE @ values, p(_GAUSS_NODES), rtol=0, atol=1e-12)
    for k in range(6):
        torch.testing.assert_close((_GAUSS_WEIGHTS * _GAUSS_NODES**k).sum(), torch.tensor(1 / (k + 1), dtype=torch.float64),
                                   rtol=0, atol=1e-14)
