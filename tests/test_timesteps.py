"""Time grids optimized for one model (anydiff.timesteps.optimize_grid / GridDensity)."""
import numpy as np
import pytest
import torch

import anydiff as ad
from anydiff.timesteps import (GridDensity, density_from_derivatives, make_timesteps, measure_x0_derivatives,
                               optimize_grid, solver_order)

SCHED = ad.schedules.cosine(1000)
# eight narrow Gaussians on a ring (the benchmark's ring-2d): x0_hat changes fast over a short
# stretch of log-SNR, where the modes separate
RING = ad.datasets.eight_gaussians_mixture(noise=0.1)


@pytest.fixture(scope="module")
def ring_grids():
    return optimize_grid(RING.model(SCHED), SCHED, event_shape=(2,), n_probe=128, n_fine=80, order=(1, 2, 3),
                         generator=torch.Generator().manual_seed(0))


def test_density_integrates_to_one_and_grids_are_monotone_with_exact_ends(ring_grids):
    for order, dens in ring_grids.items():
        lam = dens.log_snr
        mids = 0.5 * (lam[1:] + lam[:-1])
        mass = float((dens.density(mids) * lam.diff()).sum())
        assert mass == pytest.approx(1.0, abs=1e-9)
        assert bool((dens.density(mids) > 0).all())  # the floor: no stretch without steps
        assert float(dens.density(torch.tensor([lam[0] - 1.0, lam[-1] + 1.0])).abs().sum()) == 0
        for steps in (1, 2, 3, 5, 10, 37, 200):
            grid = dens.timesteps(SCHED, steps)
            assert grid.shape == (steps + 1,) and grid.dtype == torch.float64
            assert float(grid[0]) == 1.0 and float(grid[-1]) == 0.0
            assert bool((grid.diff() < 0).all())
            make_timesteps(SCHED, None, grid)  # a valid explicit grid for ad.sample
        # the quantiles invert the CDF
        u = torch.linspace(0, 1, 17, dtype=torch.float64)
        lam_u = dens.quantile(u)
        assert torch.allclose(torch.from_numpy(np.interp(lam_u.numpy(), lam.numpy(), dens.cdf.numpy())), u,
                              atol=1e-12)


def test_steps_concentrate_where_x0_hat_changes(ring_grids):
    """For the ring the modes separate around sigma~ ~ 0.4-1 (log-SNR 0..2): the density there is
    well above its average over the range, and below it at both ends."""
    dens = ring_grids[2]
    avg = 1.0 / float(dens.log_snr[-1] - dens.log_snr[0])
    middle = dens.density(torch.linspace(0.0, 2.0, 5, dtype=torch.float64))
    ends = dens.density(torch.tensor([-8.0, 9.5], dtype=torch.float64))
    assert float(middle.min()) > 1.5 * avg
    assert float(ends[0]) < avg and float(ends[1]) < 0.5 * avg


def test_measured_derivatives_match_the_closed_form_for_a_gaussian():
    """For data N(m, s^2 I) the probability-flow trajectory is x~ - m = c sqrt(s^2 + sigma~^2)
    (x~ = x/alpha, sigma~ = sigma/alpha = exp(-lambda/2)), with c constant along it, so
    x0_hat(lambda) = m + c s^2 (s^2 + e^-lambda)^(-1/2), whose derivatives are exact."""
    m, s = torch.tensor([0.5, -1.0], dtype=torch.float64), 0.7
    gm = ad.oracles.GaussianMixture([1.0], m[None], [s])
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    lam, msq = measure_x0_derivatives(gm.model(SCHED), SCHED, x_T=x_T, n_fine=250)
    alpha, sigma = SCHED.alpha_sigma(torch.ones(1, dtype=torch.float64))
    c = (x_T / alpha - m) / torch.sqrt(s**2 + (sigma / alpha) ** 2)
    mean_c2 = float(c.pow(2).mean())

    lam_ = lam.clone().requires_grad_(True)
    f = s**2 * (s**2 + torch.exp(-lam_)) ** -0.5
    derivs = []
    for _ in range(3):
        f = torch.autograd.grad(f.sum(), lam_, create_graph=True)[0]
        derivs.append(f.detach())
    for p in range(3):  # root mean squares: within 2% of the peak everywhere, 5% where large
        rms, expected = msq[p].sqrt(), mean_c2**0.5 * derivs[p].abs()
        assert float((rms - expected).abs().max()) < 0.02 * float(expected.max()), p + 1
        big = expected > 0.1 * expected.max()
        assert int(big.sum()) > 50
        rel = ((rms[big] - expected[big]) / expected[big]).abs()
        assert float(rel.max()) < 0.05, (p + 1, float(rel.max()))


def mixture_16d():
    """The benchmark's 16-D mixture (K = 5 unequal weights, full covariances, std 0.1 to 0.5)."""
    return ad.oracles.random_mixture()


def test_optimized_grid_is_no_worse_than_trailing_at_10_steps():
    """The discretization error of DPM-Solver++(2M) at 10 steps on the 16-D mixture: each sample
    against the same noise solved with 300 log-SNR steps (the exact denoiser, so no other error)."""
    gm = mixture_16d()
    model = gm.model(SCHED)
    dens = optimize_grid(model, SCHED, event_shape=(16,), n_probe=128, n_fine=80,
                         order=solver_order("dpmpp_2m"), generator=torch.Generator().manual_seed(0))
    x_T = torch.randn(400, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)

    def solve(steps, grid):
        return ad.sample(model, x_T.shape, schedule=SCHED, sampler="dpmpp_2m", steps=steps, timesteps=grid, x_T=x_T)

    reference = solve(300, "logsnr")
    errors = {name: float((solve(10, grid) - reference).norm(dim=1).mean())
              for name, grid in (("trailing", "trailing"), ("logsnr", "logsnr"),
                                 ("optimized", dens.timesteps(SCHED, 10)))}
    assert errors["optimized"] <= errors["trailing"], errors
    assert errors["optimized"] <= errors["logsnr"], errors


def test_estimator_stores_and_reloads_the_grid(tmp_path):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-2, 0.3, (300, 2)), rng.normal(2, 0.3, (300, 2))])
    est = ad.VectorDiffusion(max_steps=60, batch_size=128, hidden=32, depth=1, sampling_steps=8,
                             sampler="dpmpp_2m", timesteps="optimized", random_state=0).fit(X)
    assert set(est.timestep_grids_) == {1, 2, 3}
    grid = est._timesteps()
    assert grid.shape == (9,) and float(grid[0]) == 1.0 and float(grid[-1]) == 0.0
    path = tmp_path / "model.anydiff"
    est.save(path)
    loaded = ad.load(path)
    for p in (1, 2, 3):
        assert torch.equal(loaded.timestep_grids_[p].cdf, est.timestep_grids_[p].cdf)
        assert torch.equal(loaded.timestep_grids_[p].log_snr, est.timestep_grids_[p].log_snr)
    a = est.sample(200, random_state=4)
    assert np.array_equal(loaded.sample(200, random_state=4), a)
    # the grid is used: the log-SNR grid gives other samples from the same noise
    assert not np.allclose(est.set_params(timesteps="logsnr").sample(200, random_state=4), a)


def test_bad_values_name_the_argument():
    model = RING.model(SCHED)
    with pytest.raises(ValueError, match="order"):
        optimize_grid(model, SCHED, event_shape=(2,), order=4)
    with pytest.raises(ValueError, match="floor"):
        optimize_grid(model, SCHED, event_shape=(2,), floor=0.0)
    with pytest.raises(ValueError, match="smooth"):
        optimize_grid(model, SCHED, event_shape=(2,), smooth=-1.0)
    with pytest.raises(ValueError, match="units"):
        optimize_grid(model, SCHED, event_shape=(2,), units="pixels")
    with pytest.raises(ValueError, match="knots"):
        optimize_grid(model, SCHED, event_shape=(2,), knots=1)
    with pytest.raises(ValueError, match="n_fine"):
        optimize_grid(model, SCHED, event_shape=(2,), n_fine=3)
    with pytest.raises(ValueError, match="n_probe"):
        optimize_grid(model, SCHED, event_shape=(2,), n_probe=0)
    with pytest.raises(ValueError, match="event_shape"):
        optimize_grid(model, SCHED)
    with pytest.raises(ValueError, match="prediction"):
        optimize_grid(model, SCHED, event_shape=(2,), prediction="noise")
    lam = torch.linspace(-5, 5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="cdf"):
        GridDensity(lam, torch.tensor([0.0, 0.5, 0.4, 1.0]))
    with pytest.raises(ValueError, match="log_snr"):
        GridDensity(lam.flip(0), torch.linspace(0, 1, 4))
    dens = GridDensity(lam, torch.linspace(0, 1, 4))
    with pytest.raises(ValueError, match="steps"):
        dens.timesteps(SCHED, 0)
    with pytest.raises(ValueError, match="order"):
        density_from_derivatives(lam, torch.ones(3, 4), SCHED, order=0)
    with pytest.raises(ValueError, match="timesteps"):
        ad.VectorDiffusion(timesteps="optimised").fit(np.zeros((10, 2)))
