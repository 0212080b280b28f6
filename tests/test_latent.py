"""anydiff.latent: encoder -> latent, pointwise decoder, diffusion prior over latents.

The test sets are circles in 2-D of random radius, ``n_elements`` points each at random angles:
the one number that tells one set from another is the radius, so a working latent must carry it,
and a decoder given a set's latent must draw points at that set's radius. Tiny networks, a few
hundred steps, fixed seeds.
"""
import numpy as np
import pytest
import torch

from anydiff import schedules
from anydiff.latent import LatentDiffusion, SetEncoder, pointwise

SCHEDULE = schedules.cosine(1000)
TINY = dict(hidden=32, depth=2)
FIT = dict(schedule=SCHEDULE, batch_size=16, learning_rate=3e-3, device="cpu")


def circles(n, n_elements, *, seed=0):
    """Sets of points on circles of radius U(0.5, 2) around the origin, and the radii."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.5, 2.0, n)
    angle = rng.uniform(0, 2 * np.pi, (n, n_elements))
    return np.stack([np.cos(angle), np.sin(angle)], axis=-1) * r[:, None, None], r


@pytest.fixture(scope="module")
def circle_model():
    """Class 1: radius above 1.25; a class-conditional prior."""
    X, r = circles(48, 32)
    labels = (r > 1.25).astype(int)
    torch.manual_seed(0)  # the initial weights
    model = LatentDiffusion(2, 4, num_classes=2, **TINY).fit(X, labels, steps=150, seed=0, **FIT)
    return model, X, r


def _radii(S):
    return np.median(np.linalg.norm(np.asarray(S), axis=-1), axis=-1)


# -- the pieces ------------------------------------------------------------------------------------
def test_encoder_invariant_and_decoder_equivariant_under_permutation(circle_model):
    model = circle_model[0]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 40, 2, generator=g)
    perm = torch.randperm(40, generator=g)
    torch.testing.assert_close(model.encode(x[:, perm]), model.encode(x), rtol=0, atol=1e-6)
    z = model.encode(x)
    t = torch.tensor([0.1, 0.5, 0.9])
    out = model.denoise(x, t, z)
    assert out.abs().max() > 0  # trained: not the zero-initialised output layer
    torch.testing.assert_close(model.denoise(x[:, perm], t, z), out[:, perm])
    # and pointwise: one element's output does not depend on the others
    torch.testing.assert_close(model.denoise(x[:, :5], t, z), out[:, :5])


def test_set_encoder_shapes_and_validation():
    enc = SetEncoder(3, 8, hidden=16)
    assert enc(torch.randn(4, 10, 3)).shape == (4, 16) and enc.out_dim == 16
    assert SetEncoder(3, 8, hidden=16, variational=False)(torch.randn(4, 1, 3)).shape == (4, 8)
    with pytest.raises(ValueError, match=r"shape \(B, N, 3\)"):
        enc(torch.randn(4, 10, 2))
    with pytest.raises(ValueError, match="latent_dim"):
        SetEncoder(3, 0)


def test_pointwise_repeats_time_and_latent_per_element():
    seen = {}

    def net(x, t, cond):
        seen.update(x=x, t=t, cond=cond)
        return x * cond[:, :1]

    x, z = torch.randn(2, 3, 4), torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    out = pointwise(net, x, 0.5, z)
    assert seen["x"].shape == (6, 4) and seen["t"].shape == (6,) and seen["cond"].shape == (6, 2)
    torch.testing.assert_close(out, x * torch.tensor([1.0, 2.0])[:, None, None])


# -- what the latent carries ------------------------------------------------------------------------
def test_latent_captures_the_radius(circle_model):
    model, X, r = circle_model
    Z = model.encode(torch.from_numpy(X).float()).numpy()
    A = np.c_[Z, np.ones(len(Z))]
    resid = r - A @ np.linalg.lstsq(A, r, rcond=None)[0]
    assert 1 - resid.var() / r.var() > 0.95  # R^2 of a linear fit of the radius on the latent
    np.testing.assert_allclose(model.latent_mean.numpy(), Z.mean(0), atol=1e-5)  # the prior's standardization


def test_decoding_a_sets_latent_beats_a_random_latent(circle_model):
    model, X, r = circle_model
    g = torch.Generator().manual_seed(0)
    Z = model.encode(torch.from_numpy(X[:12]).float())
    own = model.decode(Z, 64, schedule=SCHEDULE, generator=g, steps=20)
    other = model.decode(Z[torch.roll(torch.arange(12), 5)], 64, schedule=SCHEDULE, generator=g, steps=20)
    assert own.shape == (12, 64, 2) and own.dtype == torch.float32
    err_own, err_other = np.abs(_radii(own) - r[:12]).mean(), np.abs(_radii(other) - r[:12]).mean()
    assert err_own < 0.15 and err_own < 0.5 * err_other, (err_own, err_other)


def test_class_conditional_prior_with_guidance(circle_model):
    model = circle_model[0]
    g = torch.Generator().manual_seed(1)
    kw = dict(schedule=SCHEDULE, generator=g, steps=20)
    small = model.sample(8, 32, labels=torch.zeros(8, dtype=torch.long), guidance_scale=2.0, **kw)
    large = model.sample(8, 32, labels=torch.ones(8, dtype=torch.long), guidance_scale=2.0, **kw)
    assert small.shape == large.shape == (8, 32, 2)
    assert np.median(_radii(small)) < 1.0 < 1.5 < np.median(_radii(large)), (_radii(small), _radii(large))
    z = model.sample_latents(5, labels=torch.ones(5, dtype=torch.long), **kw)
    assert z.shape == (5, 4)


# -- determinism and persistence ------------------------------------------------------------------
def test_fit_and_sample_are_reproducible():
    X, _ = circles(8, 16, seed=3)

    def fit(seed=7):
        torch.manual_seed(0)  # the initial weights
        return LatentDiffusion(2, 4, **TINY).fit(X, steps=5, seed=seed, **FIT)

    a, b = fit(), fit()
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)

    def draw(m, s):
        return m.sample(3, 10, schedule=SCHEDULE, steps=5, generator=torch.Generator().manual_seed(s))

    torch.testing.assert_close(draw(a, 0), draw(b, 0), rtol=0, atol=0)
    assert not torch.equal(draw(a, 0), draw(a, 1))
    assert len(a.history_["autoencoder"]) == 1 and len(a.history_["prior"]) == 1
    assert not torch.equal(a.latent_mean, fit(seed=8).latent_mean)


def test_save_load_round_trip_gives_equal_outputs(circle_model, tmp_path):
    from safetensors.torch import load_file, save_file

    model, X, _ = circle_model
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    loaded = LatentDiffusion(2, 4, num_classes=2, **TINY)
    loaded.load_state_dict(load_file(str(tmp_path / "m.safetensors")), strict=True)
    x = torch.from_numpy(X[:4]).float()
    torch.testing.assert_close(loaded.encode(x), model.encode(x), rtol=0, atol=0)
    draw = lambda m: m.sample(2, 8, schedule=SCHEDULE, steps=5, labels=torch.tensor([0, 1]),  # noqa: E731
                              generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(draw(loaded), draw(model), rtol=0, atol=0)


# -- other encoders, other settings -------------------------------------------------------------------
class MeanEncoder(torch.nn.Module):
    """A deterministic encoder of another kind: a linear map of the set's mean and mean norm."""

    def __init__(self, latent_dim):
        super().__init__()
        self.lin = torch.nn.Linear(3, latent_dim)

    def forward(self, x):
        return self.lin(torch.cat([x.mean(1), x.norm(dim=-1).mean(1, keepdim=True)], dim=-1))


def test_custom_non_variational_encoder():
    X, r = circles(16, 16, seed=4)
    model = LatentDiffusion(2, 3, variational=False, encoder=MeanEncoder(3), **TINY).fit(X, steps=3, seed=0, **FIT)
    assert model.encode(torch.from_numpy(X).float()).shape == (16, 3)
    assert model.sample(2, 7, schedule=SCHEDULE, steps=3).shape == (2, 7, 2)


def test_bad_arguments():
    X, _ = circles(4, 8)
    with pytest.raises(ValueError, match="kl_weight"):
        LatentDiffusion(2, 4, kl_weight=-1.0)
    with pytest.raises(ValueError, match="latent_dim"):
        LatentDiffusion(2, 0)
    with pytest.raises(ValueError, match=r"X must have shape \(n_sets, n_elements, 2\)"):
        LatentDiffusion(2, 4, **TINY).fit(X[..., :1], steps=1, **FIT)
    with pytest.raises(ValueError, match="num_classes"):
        LatentDiffusion(2, 4, **TINY).fit(X, [0, 1, 0, 1], steps=1, **FIT)
    with pytest.raises(ValueError, match=r"encoder must return shape \(4, 8\)"):
        LatentDiffusion(2, 4, encoder=MeanEncoder(4)).encode(torch.from_numpy(X).float())
    with pytest.raises(ValueError, match="n_elements"):
        LatentDiffusion(2, 4).decode(torch.zeros(1, 4), 0, schedule=SCHEDULE)
