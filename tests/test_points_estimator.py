"""PointCloudDiffusion: the set-transformer estimator of anydiff.points.

Tiny models (width 32, one block, 64 points) trained for a few hundred steps: the checks are
against properties that hold by construction (equivariance, exact observed points, the stored
statistics, reproducibility) or against the training distribution with loose tolerances.
"""
import numpy as np
import pytest
import torch

import anydiff as ad
from anydiff.points import metrics

TINY = dict(hidden=32, depth=1, heads=2, batch_size=16, learning_rate=3e-3, sampling_steps=20, device="cpu")
CENTRE, RADIUS = np.array([10.0, 0.0, 0.0]), 5.0


def spheres(n, n_points, *, radius=RADIUS, centre=CENTRE, seed=0):
    """Points uniform on spheres of radius ``radius * U(0.9, 1.1)`` around ``centre``."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, n_points, 3))
    v /= np.linalg.norm(v, axis=2, keepdims=True)
    return v * radius * rng.uniform(0.9, 1.1, (n, 1, 1)) + np.asarray(centre)


@pytest.fixture(scope="module")
def sphere_model():
    X = spheres(32, 64)
    return ad.PointCloudDiffusion(normalize="global", max_steps=400, random_state=0, **TINY).fit(X), X


@pytest.fixture(scope="module")
def blob_model():
    """Two classes: Gaussian blobs centred at x = -3 ("left") and x = +3 ("right")."""
    rng = np.random.default_rng(1)
    y = np.array(["left", "right"] * 16)
    X = rng.normal(size=(32, 64, 3)) * 0.5
    X[:, :, 0] += np.where(y == "left", -3.0, 3.0)[:, None]
    model = ad.PointCloudDiffusion(normalize="global", max_steps=400, random_state=0, **TINY).fit(X, y)
    return model, X, y


# -- the adapter -------------------------------------------------------------------------------
def test_parameters_clone():
    from sklearn.base import clone

    est = ad.PointCloudDiffusion(normalize="sphere", train_points=128, random_state=0)
    assert clone(est).get_params() == est.get_params()
    assert "normalize='sphere'" in repr(est)


def test_lazy_export():
    assert ad.PointCloudDiffusion is ad.points.PointCloudDiffusion
    assert "PointCloudDiffusion" in ad.__all__ and "PointCloudDiffusion" in dir(ad)


# -- the denoiser --------------------------------------------------------------------------------
def test_fitted_denoiser_is_permutation_equivariant(blob_model):
    model = blob_model[0].model_
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 50, 3, generator=g)
    t = torch.tensor([0.1, 0.5, 0.9])
    cond = torch.tensor([0, 1, 1])
    perm = torch.randperm(50, generator=g)
    with torch.no_grad():
        out = model(x, t, cond)
        out_perm = model(x[:, perm], t, cond)
    assert out.abs().max() > 0  # trained: not the zero-initialised output
    torch.testing.assert_close(out_perm, out[:, perm])


# -- sampling ------------------------------------------------------------------------------------
def test_sample_any_number_of_points_in_units_of_X(sphere_model):
    model, X = sphere_model
    assert model.train_points_ == 64
    S = model.sample(4, n_points=100, random_state=0)
    assert S.shape == (4, 100, 3) and S.dtype == np.float64 and np.isfinite(S).all()
    centres = S.mean(axis=1)
    assert np.abs(centres - CENTRE).max() < 1.0, centres  # training centres: (10, 0, 0) exactly
    radii = np.linalg.norm(S - centres[:, None], axis=2).mean(axis=1)
    assert np.all((radii > 0.7 * RADIUS) & (radii < 1.3 * RADIUS)), radii  # training: 4.5 to 5.5


def test_same_random_state_same_samples(sphere_model):
    model = sphere_model[0]
    a = model.sample(2, n_points=30, random_state=7)
    np.testing.assert_array_equal(a, model.sample(2, n_points=30, random_state=7))
    assert not np.array_equal(a, model.sample(2, n_points=30, random_state=8))


def test_fit_is_reproducible_and_takes_lists_of_different_sizes():
    X = [spheres(1, n, seed=n)[0] for n in (50, 64, 80, 70)]
    fit = lambda: ad.PointCloudDiffusion(max_steps=20, random_state=3, **TINY).fit(X)  # noqa: E731
    a, b = fit(), fit()
    assert a.train_points_ == 50 and a.stats_.shape == (4, 4)
    np.testing.assert_array_equal(a.sample(2, n_points=40, random_state=0), b.sample(2, n_points=40, random_state=0))
    assert ad.PointCloudDiffusion(train_points=40, max_steps=2, **TINY).fit(X).train_points_ == 40


@pytest.mark.parametrize("mode", ["box", "sphere", "global"])
def test_training_clouds_are_subsets_without_replacement(mode, monkeypatch):
    X = [spheres(1, n, seed=n)[0] for n in (30, 45, 60)]
    seen = {}
    monkeypatch.setattr(ad.PointCloudDiffusion, "_train", lambda self, Z, codes, **kw: seen.update(Z=Z))
    model = ad.PointCloudDiffusion(normalize=mode, random_state=0, **TINY).fit(X)
    Z = seen["Z"]
    assert Z.shape == (3, 30, 3) and model.train_points_ == 30
    for i, cloud in enumerate(X):
        row = 0 if mode == "global" else i
        back = Z[i] * model.stats_[row, 3] + model.stats_[row, :3]  # undo the normalization
        d = np.linalg.norm(back[:, None] - cloud[None], axis=2)
        hits = d.argmin(axis=1)
        assert d.min(axis=1).max() < 1e-9 and len(set(hits.tolist())) == 30  # distinct points of the cloud
    np.testing.assert_array_equal(Z[0], (X[0] - model.stats_[0, :3]) / model.stats_[0, 3])  # smallest: all, in order


@pytest.mark.parametrize("mode", ["box", "sphere"])
def test_per_shape_normalization_is_inverted(mode):
    """Samples take the centre and scale of a training cloud: their extent lies within the range
    of training scales (the clean-data estimate is clipped to the normalized range)."""
    rng = np.random.default_rng(2)
    radii = rng.uniform(2.0, 6.0, 16)
    centres = rng.uniform(-20, 20, (16, 3))
    X = np.stack([spheres(1, 64, radius=r, centre=c, seed=i)[0] for i, (r, c) in enumerate(zip(radii, centres))])
    model = ad.PointCloudDiffusion(normalize=mode, max_steps=100, random_state=0, **TINY).fit(X)
    np.testing.assert_allclose(model.stats_, metrics.cloud_stats(list(X), mode))
    S = model.sample(6, n_points=64, random_state=0)
    # clipping keeps the normalized sample in the normalized training range, so each sample lies
    # in the box centre_j + scale_j * [z_min_, z_max_] of the training cloud j whose statistics it took
    c, sc = model.stats_[:, None, None, :3], model.stats_[:, None, None, 3:]
    low, high = c + sc * (model.z_min_ - 1e-6), c + sc * (model.z_max_ + 1e-6)  # float32 sampling
    inside = ((S[None] >= low) & (S[None] <= high)).all(axis=(2, 3))  # (n_train, n_samples)
    assert inside.any(axis=0).all()
    lo, hi = model.stats_[:, 3].min(), model.stats_[:, 3].max()
    if mode == "box":
        scale = ((S.max(1) - S.min(1)) / 2).max(axis=1)
    else:
        scale = np.median(np.linalg.norm(S - S.mean(axis=1, keepdims=True), axis=2), axis=1)
    assert np.all((scale > 0.5 * lo) & (scale < 1.2 * hi)), (scale, lo, hi)


def test_per_class_statistics_follow_y():
    """With per-shape normalization a sample of class c takes a class-c training cloud's scale."""
    X = np.concatenate([spheres(4, 32, radius=1.0, centre=(0, 0, 0)), spheres(4, 32, radius=10.0, centre=(0, 0, 0))])
    y = np.array([0] * 4 + [1] * 4)
    model = ad.PointCloudDiffusion(max_steps=5, random_state=0, **TINY).fit(X, y)
    S = model.sample(6, n_points=16, y=[0, 1, 0, 1, 0, 1], random_state=0)
    extent = ((S.max(1) - S.min(1)) / 2).max(axis=1)
    assert np.all(extent[0::2] <= 1.1 * 1.0 + 1e-9) and np.all(extent[1::2] > 1.5)


def test_class_conditional_sampling(blob_model):
    model, _, _ = blob_model
    np.testing.assert_array_equal(model.classes_, ["left", "right"])
    left = model.sample(3, n_points=64, y="left", random_state=0)
    right = model.sample(3, n_points=64, y="right", guidance_scale=2.0, random_state=0)
    assert np.all(left.mean(axis=1)[:, 0] < -1.5) and np.all(right.mean(axis=1)[:, 0] > 1.5)
    mixed = model.sample(2, n_points=64, y=["right", "left"], guidance_scale=1.5, random_state=1)
    assert mixed[0, :, 0].mean() > 1.5 and mixed[1, :, 0].mean() < -1.5
    with pytest.raises(ValueError, match="labels not seen"):
        model.sample(1, n_points=8, y="middle")
    with pytest.raises(ValueError, match="guidance_scale needs y"):
        model.sample(1, n_points=8, guidance_scale=2.0)


def _roundness(S):
    """Relative spread of the distances to the bounding-box centre: ~0 on a sphere, ~0.1-0.25
    on a box (the training sets below)."""
    r = np.linalg.norm(S - (S.max(1, keepdims=True) + S.min(1, keepdims=True)) / 2, axis=2)
    return r.std(axis=1) / r.mean(axis=1)


def test_class_conditional_shapes_with_guidance():
    """Spheres against boxes, per-shape "box" normalization: the class lives in the shape alone."""
    X, y = ad.points.make_shapes(32, n_points=64, classes=["sphere", "box"], anisotropy=0.0, random_state=0,
                                 return_labels=True)
    assert _roundness(X[y == "sphere"]).max() < 0.06 < 0.1 < _roundness(X[y == "box"]).min()
    model = ad.PointCloudDiffusion(max_steps=600, random_state=0, **{**TINY, "hidden": 64, "heads": 4}).fit(X, y)
    sphere = _roundness(model.sample(4, n_points=64, y="sphere", random_state=0))
    box = _roundness(model.sample(4, n_points=64, y="box", random_state=0))
    assert sphere.mean() < box.mean(), (sphere, box)
    sphere = _roundness(model.sample(4, n_points=64, y="sphere", guidance_scale=2.0, random_state=0))
    box = _roundness(model.sample(4, n_points=64, y="box", guidance_scale=2.0, random_state=0))
    assert sphere.max() < box.min(), (sphere, box)  # tiny model: separated with guidance


# -- shape completion ------------------------------------------------------------------------------
def test_complete_keeps_the_observed_points(sphere_model):
    model, _ = sphere_model
    full = spheres(1, 200, seed=11)[0]
    partial = full[full[:, 2] > 0][:40]  # the upper half of a sphere
    out = model.complete(partial, n_points=100, resample=2, steps=20, random_state=0)
    assert out.shape == (100, 3) and np.isfinite(out).all()
    np.testing.assert_array_equal(out[:40], partial)
    # one-sided Chamfer distance from the observed part to the completion: 0 (every point kept)
    d2 = ((out[:, None] - partial[None]) ** 2).sum(axis=2)  # (100, 40), brute force
    assert d2.min(axis=0).max() == 0.0
    assert metrics.chamfer_distance(partial, out) == pytest.approx(d2.min(axis=1).mean(), abs=1e-12)
    # the completion is still a sphere-like cloud around the training centre (loose)
    r = np.linalg.norm(out[40:] - CENTRE, axis=1)
    assert 0.6 * RADIUS < np.median(r) < 1.4 * RADIUS, np.median(r)


def test_complete_batch_of_scans_per_shape():
    X = spheres(8, 64, radius=2.0, centre=(0, 0, 0))
    model = ad.PointCloudDiffusion(max_steps=20, random_state=0, **TINY).fit(X)
    scans = [X[0, :10] + 5.0, X[1, :20] - 5.0]
    out = model.complete(scans, n_points=32, resample=1, steps=5, random_state=0)
    assert out.shape == (2, 32, 3) and np.isfinite(out).all()
    np.testing.assert_array_equal(out[0, :10], scans[0])
    np.testing.assert_array_equal(out[1, :20], scans[1])
    a = model.complete(np.stack([X[2, :10]]), n_points=16, resample=1, steps=5, random_state=3)
    assert a.shape == (1, 16, 3)
    np.testing.assert_array_equal(a, model.complete(np.stack([X[2, :10]]), n_points=16, resample=1, steps=5,
                                                    random_state=3))


# -- persistence ----------------------------------------------------------------------------------
def test_save_load_round_trip_without_training_points(blob_model, tmp_path):
    from safetensors import safe_open

    model, X, _ = blob_model
    path = tmp_path / "points.anydiff"
    model.save(path)
    loaded = ad.load(path)
    assert isinstance(loaded, ad.PointCloudDiffusion) and loaded.train_points_ == 64
    np.testing.assert_array_equal(loaded.sample(2, n_points=20, y="left", random_state=5),
                                  model.sample(2, n_points=20, y="left", random_state=5))
    np.testing.assert_array_equal(loaded.complete(X[0, :10], n_points=16, resample=1, steps=5, random_state=0),
                                  model.complete(X[0, :10], n_points=16, resample=1, steps=5, random_state=0))
    with safe_open(str(path), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if not k.startswith("model.")}
    assert all(np.prod(s) <= 4 * len(X) for s in shapes.values()), shapes
    raw = path.read_bytes()
    for p in X[:4, :4].reshape(-1, 3):  # no training coordinate, in either precision
        for dtype in (np.float64, np.float32):
            assert p.astype(dtype).tobytes() not in raw


# -- bad input ------------------------------------------------------------------------------------
GOOD = spheres(4, 16)


@pytest.mark.parametrize("X, match", [
    (np.where(np.arange(16)[None, :, None] == 3, np.nan, GOOD), "NaN or infinite"),
    (np.where(np.arange(16)[None, :, None] == 3, np.inf, GOOD), "NaN or infinite"),
    ([GOOD[0], GOOD[1, :1]], r"X\[1\] has 1 point"),
    (GOOD[:, :1], r"has 1 point"),
    (GOOD[:, :, :2], "last axis"),
    ([GOOD[0], GOOD[1, :, :2]], r"X\[1\] must have shape \(n_points, 3\)"),
    ([], "empty list"),
    (GOOD[0], "one cloud"),
    (np.zeros((0, 16, 3)), "no clouds"),
    ([GOOD[0], np.ones((5, 3))], "no extent"),
    (np.array([[["a", "b", "c"]] * 3]), "real numbers"),
])
def test_fit_rejects_bad_clouds(X, match):
    with pytest.raises(ValueError, match=match):
        ad.PointCloudDiffusion(max_steps=1, **TINY).fit(X)


def test_bad_parameters_and_arguments(sphere_model):
    with pytest.raises(ValueError, match="normalize"):
        ad.PointCloudDiffusion(normalize="cube", max_steps=1, **TINY).fit(GOOD)
    with pytest.raises(ValueError, match="train_points=20 exceeds the smallest cloud"):
        ad.PointCloudDiffusion(train_points=20, max_steps=1, **TINY).fit(GOOD)
    with pytest.raises(ValueError, match="heads=3 must divide hidden=32"):
        ad.PointCloudDiffusion(max_steps=1, **{**TINY, "heads": 3}).fit(GOOD)
    with pytest.raises(ValueError, match="one label per cloud"):
        ad.PointCloudDiffusion(max_steps=1, **TINY).fit(GOOD, [0, 1])
    model = sphere_model[0]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n_clouds"):
            model.sample(bad, n_points=8)
        with pytest.raises(ValueError, match="n_points"):
            model.sample(1, n_points=bad)
        with pytest.raises(ValueError, match="n_points"):
            model.complete(GOOD[0, :4], n_points=bad)
    with pytest.raises(ValueError, match="y was given"):
        model.sample(1, n_points=8, y=0)
    with pytest.raises(ValueError, match="partial has 0 point"):
        model.complete(np.zeros((0, 3)), n_points=8)
    with pytest.raises(ValueError, match=r"partial\[1\] has 0 point"):
        model.complete([GOOD[0, :3], np.zeros((0, 3))], n_points=8)
    with pytest.raises(ValueError, match=r"partial must have shape"):
        model.complete(GOOD[0, :, :2], n_points=32)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.complete(np.where(np.arange(16)[:, None] == 0, np.nan, GOOD[0]), n_points=32)
    with pytest.raises(ValueError, match=r"ask for more points \(n_points > 16\)"):
        model.complete(GOOD[0], n_points=16)
    with pytest.raises(ValueError, match="partial is an empty list"):
        model.complete([], n_points=8)


def test_unfitted_model_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ad.PointCloudDiffusion().sample(1, n_points=8)
    with pytest.raises(NotFittedError):
        ad.PointCloudDiffusion().complete(GOOD[0], n_points=32)


# -- architecture="latent" -------------------------------------------------------------------------
LATENT = dict(architecture="latent", latent_dim=8, hidden=32, depth=2, batch_size=16, learning_rate=3e-3,
              sampling_steps=20, device="cpu")


@pytest.fixture(scope="module")
def latent_blobs():
    """The two blob classes of ``blob_model`` (x = -3 "left", x = +3 "right"), latent architecture."""
    rng = np.random.default_rng(1)
    y = np.array(["left", "right"] * 16)
    X = rng.normal(size=(32, 64, 3)) * 0.5
    X[:, :, 0] += np.where(y == "left", -3.0, 3.0)[:, None]
    model = ad.PointCloudDiffusion(normalize="global", max_steps=200, train_points=32, random_state=0,
                                   **LATENT).fit(X, y)
    return model, X, y


def test_latent_model_pieces_and_permutations(latent_blobs):
    from anydiff.latent import LatentDiffusion

    model = latent_blobs[0]
    net = model.model_
    assert isinstance(net, LatentDiffusion) and net.latent_dim == 8 and net.num_classes == 2
    assert len(model.loss_curve_) == 2 and len(model.prior_loss_curve_) == 2  # 200 steps, logged every 100
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 50, 3, generator=g)
    perm = torch.randperm(50, generator=g)
    torch.testing.assert_close(net.encode(x[:, perm]), net.encode(x), rtol=0, atol=1e-6)
    z, t = net.encode(x), torch.tensor([0.1, 0.5, 0.9])
    out = net.denoise(x, t, z)
    assert out.abs().max() > 0
    torch.testing.assert_close(net.denoise(x[:, perm], t, z), out[:, perm])


def test_latent_sample_shapes_units_and_classes(latent_blobs):
    model, X, _ = latent_blobs
    left = model.sample(3, n_points=100, y="left", random_state=0)
    right = model.sample(3, n_points=30, y="right", guidance_scale=2.0, random_state=0)
    assert left.shape == (3, 100, 3) and right.shape == (3, 30, 3) and left.dtype == np.float64
    assert np.all(left.mean(axis=1)[:, 0] < -2.0) and np.all(right.mean(axis=1)[:, 0] > 2.0)
    spread = left.std(axis=1).mean()  # training: 0.5 per axis
    assert 0.3 < spread < 0.7, spread
    both = model.sample(4, n_points=16, random_state=1)  # unconditional: from the prior's null class
    assert both.shape == (4, 16, 3) and np.isfinite(both).all()
    np.testing.assert_array_equal(model.sample(2, n_points=16, y="left", random_state=3),
                                  model.sample(2, n_points=16, y="left", random_state=3))
    with pytest.raises(ValueError, match="guidance_scale needs y"):
        model.sample(1, n_points=8, guidance_scale=2.0)
    with pytest.raises(ValueError, match="labels not seen"):
        model.sample(1, n_points=8, y="middle")


def test_latent_complete_keeps_observed_points(latent_blobs):
    model, X, _ = latent_blobs
    scans = [X[0, :20], X[1, :10]]  # a left and a right blob
    out = model.complete(scans, n_points=40, steps=10, random_state=0)
    assert out.shape == (2, 40, 3) and np.isfinite(out).all()
    np.testing.assert_array_equal(out[0, :20], scans[0])
    np.testing.assert_array_equal(out[1, :10], scans[1])
    assert out[0, 20:, 0].mean() < -2.0 and out[1, 10:, 0].mean() > 2.0  # the scan's shape, through its latent
    one = model.complete(X[2, :5], n_points=12, steps=5, random_state=4)
    assert one.shape == (12, 3)
    np.testing.assert_array_equal(one, model.complete(X[2, :5], n_points=12, steps=5, random_state=4))


def test_latent_fit_is_reproducible_per_shape():
    X = [spheres(1, n, seed=n)[0] for n in (40, 48, 56, 64)]
    fit = lambda: ad.PointCloudDiffusion(max_steps=5, random_state=3, **LATENT).fit(X)  # noqa: E731
    a, b = fit(), fit()
    assert a.train_points_ == 40
    np.testing.assert_array_equal(a.sample(2, n_points=24, random_state=0), b.sample(2, n_points=24, random_state=0))
    S = a.sample(3, n_points=24, random_state=0)
    # "box": clipped to the normalized range, mapped through a training cloud's centre and scale
    c, sc = a.stats_[:, None, None, :3], a.stats_[:, None, None, 3:]
    inside = ((S[None] >= c + sc * (a.z_min_ - 1e-6)) & (S[None] <= c + sc * (a.z_max_ + 1e-6))).all(axis=(2, 3))
    assert inside.any(axis=0).all()


def test_latent_save_load_round_trip(latent_blobs, tmp_path):
    from safetensors import safe_open

    model, X, _ = latent_blobs
    path = tmp_path / "latent.anydiff"
    model.save(path)
    loaded = ad.load(path)
    assert loaded.architecture == "latent" and loaded.prior_loss_curve_ == model.prior_loss_curve_
    np.testing.assert_array_equal(loaded.sample(2, n_points=20, y="right", guidance_scale=1.5, random_state=5),
                                  model.sample(2, n_points=20, y="right", guidance_scale=1.5, random_state=5))
    np.testing.assert_array_equal(loaded.complete(X[0, :10], n_points=16, steps=5, random_state=0),
                                  model.complete(X[0, :10], n_points=16, steps=5, random_state=0))
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
    for part in ("model.encoder.", "model.decoder.", "model.prior.", "model.latent_mean", "model.latent_scale"):
        assert any(k.startswith(part) for k in keys), part
    raw = path.read_bytes()
    for p in X[:4, :4].reshape(-1, 3):  # no training coordinate
        for dtype in (np.float64, np.float32):
            assert p.astype(dtype).tobytes() not in raw


@pytest.mark.parametrize("params, match", [
    (dict(architecture="pointnet"), "architecture"),
    (dict(architecture="latent", latent_dim=0), "latent_dim"),
    (dict(architecture="latent", latent_dim=2.5), "latent_dim"),
    (dict(architecture="latent", kl_weight=-1e-3), "kl_weight"),
    (dict(architecture="latent", hidden=0), "hidden"),
])
def test_latent_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        ad.PointCloudDiffusion(max_steps=1, device="cpu", **params).fit(GOOD)


def test_latent_ignores_heads():
    model = ad.PointCloudDiffusion(max_steps=1, **{**LATENT, "heads": 3}).fit(GOOD)  # 3 does not divide 32
    assert model.sample(1, n_points=5, random_state=0).shape == (1, 5, 3)
