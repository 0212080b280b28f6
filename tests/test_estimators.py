"""VectorDiffusion: scikit-learn's own estimator checks, and behaviour against references."""
import os
import pickle

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

import anydiff as ad
from anydiff.estimators import VectorDiffusion

TINY = dict(max_steps=8, batch_size=32, hidden=16, depth=1, sampling_steps=3, random_state=0)


@parametrize_with_checks([VectorDiffusion(**TINY)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module", params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def gaussian_fit(request):
    """A correlated 2-D Gaussian far from the origin, in odd units: what standardization is for.
    Fitted on the CPU and, where there is one, on a GPU (bf16 training, a CUDA graph): every test
    of this fixture checks both against the same references."""
    rng = np.random.default_rng(0)
    cov = np.array([[4.0, 1.2], [1.2, 0.5]])
    X = rng.multivariate_normal([100.0, -3.0], cov, size=3000)
    est = VectorDiffusion(max_steps=800, batch_size=256, hidden=64, depth=2, learning_rate=3e-3,
                          device=request.param, random_state=0).fit(X)
    assert est._device().type == request.param
    return est, X, cov


def test_samples_match_the_data(gaussian_fit):
    est, X, cov = gaussian_fit
    s = est.sample(4000, random_state=1)
    assert s.shape == (4000, 2) and s.dtype == np.float64
    np.testing.assert_allclose(s.mean(0), [100.0, -3.0], atol=0.15)
    np.testing.assert_allclose(np.cov(s.T), cov, rtol=0.15, atol=0.05)


def test_clip_keeps_samples_in_the_fitted_range(gaussian_fit):
    """clip=True clamps the clean-data estimate to the range seen in fit; without it a Gaussian's
    samples pass the extremes of 3000 training points about once per 3000 draws per side."""
    est, X, _ = gaussian_fit
    np.testing.assert_array_equal(est.data_min_, X.min(0))
    np.testing.assert_array_equal(est.data_max_, X.max(0))
    clipped = est.sample(20000, random_state=2)
    tol = 1e-6 * np.abs(X).max(0)  # float32 sampling, standardized and back
    assert ((clipped >= X.min(0) - tol) & (clipped <= X.max(0) + tol)).all()
    free = clone_with(est, clip=False).sample(20000, random_state=2)
    assert ((free < X.min(0)) | (free > X.max(0))).any()
    inside = ((free >= X.min(0)) & (free <= X.max(0))).all(1)
    assert inside.mean() > 0.99  # clipping touches the rare rows only


def clone_with(est, **params):
    """A fitted estimator's copy with other sampling parameters (no refit)."""
    import copy

    other = copy.deepcopy(est)
    return other.set_params(**params)


def test_without_fourier_features():
    X = np.random.default_rng(0).normal(size=(200, 3))
    est = VectorDiffusion(**{**TINY, "fourier_features": 0}).fit(X)
    assert est.model_.features is None and est.sample(5, random_state=0).shape == (5, 3)
    assert VectorDiffusion(**TINY).fit(X).model_.features.out_dim == 3 * 33


def test_stable_targets_reach_the_trainer():
    """reference_batch > 0 trains on the stable target field, whose targets vary less than the
    plain ones at high noise: the same network, batches and steps see a lower loss."""
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(-2.0, 0.3, (300, 2)), rng.normal(2.0, 0.3, (300, 2))])
    loss = {rb: VectorDiffusion(**{**TINY, "max_steps": 100, "reference_batch": rb}).fit(X).loss_curve_[0]
            for rb in (0, 128)}
    assert loss[128] < 0.9 * loss[0], loss


def test_sampling_is_reproducible_and_chunked(gaussian_fit):
    est = gaussian_fit[0]
    a = est.sample(300, random_state=7)
    assert np.array_equal(a, est.sample(300, random_state=7))
    assert not np.array_equal(a, est.sample(300, random_state=8))
    chunked = est.sample(300, random_state=7, chunk_size=64)
    assert chunked.shape == (300, 2) and np.isfinite(chunked).all()


def test_score_samples_against_the_true_density(gaussian_fit):
    """In the units of X: the standardization's Jacobian is included, so the model's
    log-likelihood is close to the true Gaussian's (entropy of N(mu, cov))."""
    from scipy import stats

    est, X, cov = gaussian_fit
    x = X[:100]
    ll = est.score_samples(x)
    true = stats.multivariate_normal([100.0, -3.0], cov).logpdf(x)
    assert ll.shape == (100,)
    assert abs(ll.mean() - true.mean()) < 0.1
    assert est.score(x) == pytest.approx(ll.mean())


def test_impute_keeps_observed_entries_and_follows_the_conditional(gaussian_fit):
    est, X, cov = gaussian_fit
    x = np.tile([[102.0, np.nan]], (1000, 1))
    filled = est.impute(x, random_state=0)
    assert np.array_equal(filled[:, 0], x[:, 0])
    cond_mean = -3.0 + cov[1, 0] / cov[0, 0] * 2.0
    cond_std = np.sqrt(cov[1, 1] - cov[1, 0] ** 2 / cov[0, 0])
    assert abs(filled[:, 1].mean() - cond_mean) < 0.15
    assert abs(filled[:, 1].std() / cond_std - 1) < 0.25
    complete = X[:5]
    assert np.array_equal(est.impute(complete), complete)


def test_transform_round_trip(gaussian_fit):
    est, X, _ = gaussian_fit
    Z = est.transform(X[:200])
    assert Z.shape == (200, 2)
    assert abs(Z.mean()) < 0.3 and abs(Z.std() - 1) < 0.3
    err = np.abs(est.inverse_transform(Z) - X[:200])
    assert np.median(err) < 0.01 and err.max() < 0.2  # ODE discretization, largest in the tails


def test_save_load_round_trip(gaussian_fit, tmp_path):
    est = gaussian_fit[0]
    path = tmp_path / "model.anydiff"
    est.save(path)
    loaded = ad.load(path)
    assert type(loaded) is VectorDiffusion and loaded.get_params() == est.get_params()
    assert np.array_equal(loaded.sample(50, random_state=3), est.sample(50, random_state=3))
    for attr in ("mean_", "scale_", "data_min_", "data_max_"):
        np.testing.assert_array_equal(getattr(loaded, attr), getattr(est, attr))
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {Evil.marker}",))


def test_loading_rejects_foreign_files_and_never_executes(gaussian_fit, tmp_path):
    Evil.marker = str(tmp_path / "pwned")
    pickled = tmp_path / "evil.anydiff"
    pickled.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="not an anydiff model"):
        ad.load(pickled)
    assert not os.path.exists(Evil.marker)
    good = tmp_path / "good.anydiff"
    gaussian_fit[0].save(good)
    truncated = tmp_path / "short.anydiff"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="not an anydiff model"):
        ad.load(truncated)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not an anydiff model"):
        ad.load(foreign)
    newer = tmp_path / "newer.anydiff"
    from safetensors import safe_open

    with safe_open(good, framework="pt") as fh:
        meta, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}
    meta["format_version"] = "99"
    save_file(tensors, newer, metadata=meta)
    with pytest.raises(ValueError, match="version"):
        ad.load(newer)
    with pytest.raises(ValueError, match="no such"):
        ad.load(tmp_path / "missing.anydiff")


def test_class_conditional_sampling_with_guidance():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    X = np.where(y[:, None] == 0, [-3.0, 0.0], [3.0, 0.0]) + 0.4 * rng.normal(size=(2000, 2))
    labels = np.array(["left", "right"])[y]
    est = VectorDiffusion(max_steps=500, batch_size=256, hidden=64, depth=2, learning_rate=3e-3,
                          random_state=0).fit(X, labels)
    assert list(est.classes_) == ["left", "right"]
    right = est.sample(500, y="right", random_state=0)
    assert (right[:, 0] > 0).mean() > 0.95
    guided = est.sample(500, y="right", guidance_scale=3.0, random_state=0)
    assert (guided[:, 0] > 0).mean() >= (right[:, 0] > 0).mean()
    mixed = est.sample(4, y=["left", "right", "left", "right"], random_state=0)
    assert mixed.shape == (4, 2)
    with pytest.raises(ValueError, match="labels not seen"):
        est.sample(3, y="up")
    with pytest.raises(ValueError, match="y"):
        est.sample(3, y=["left", "right"])


def test_grid_search_tunes_like_kernel_density():
    X = np.random.default_rng(2).normal(size=(400, 2))
    search = GridSearchCV(VectorDiffusion(max_steps=30, hidden=16, depth=1, sampling_steps=3, random_state=0),
                          {"learning_rate": [1e-3, 3e-3]}, cv=2)
    search.fit(X)
    assert set(search.best_params_) == {"learning_rate"}
    assert np.isfinite(search.best_score_)


def test_errors_are_clear():
    est = VectorDiffusion(**TINY)
    with pytest.raises(NotFittedError):
        est.sample(3)
    with pytest.raises(ValueError, match="max_steps"):
        VectorDiffusion(max_steps=0).fit(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="sampler"):
        VectorDiffusion(sampler="plms").fit(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="reference_batch"):
        VectorDiffusion(reference_batch=-1).fit(np.zeros((10, 2)))
    X = np.random.default_rng(0).normal(size=(64, 3))
    est.fit(X)
    with pytest.raises(ValueError, match="3 features"):
        est.score_samples(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="n_samples"):
        est.sample(0)
    with pytest.raises(ValueError, match="y"):
        est.sample(2, y=1)
    with pytest.raises(ValueError, match="guidance_scale"):
        est.sample(2, guidance_scale=2.0)
    with pytest.raises(ValueError, match="NaN"):
        est.fit(np.full((10, 2), np.nan))


def test_continuous_labels_are_refused_with_a_hint():
    X = np.random.default_rng(0).normal(size=(64, 2))
    with pytest.raises(ValueError, match="continuous.*class labels.*pandas.cut"):
        VectorDiffusion(**TINY).fit(X, X[:, 0])
    # whole numbers stored as floats are labels
    est = VectorDiffusion(**TINY).fit(X, (X[:, 0] > 0).astype(float))
    np.testing.assert_array_equal(est.classes_, [0.0, 1.0])


def test_numpy_generators_are_random_states():
    X = np.random.default_rng(0).normal(size=(64, 2))
    params = {k: v for k, v in TINY.items() if k != "random_state"}
    a = VectorDiffusion(**params, random_state=np.random.default_rng(5)).fit(X)
    b = VectorDiffusion(**params, random_state=np.random.default_rng(5)).fit(X)
    np.testing.assert_array_equal(a.sample(20, random_state=np.random.default_rng(1)),
                                  b.sample(20, random_state=np.random.default_rng(1)))
    assert not np.array_equal(a.sample(20, random_state=np.random.default_rng(1)),
                              a.sample(20, random_state=np.random.default_rng(2)))


def test_save_into_a_missing_folder_names_the_path(tmp_path):
    est = VectorDiffusion(**TINY).fit(np.random.default_rng(0).normal(size=(64, 2)))
    target = tmp_path / "missing" / "m.anydiff"
    with pytest.raises(ValueError, match=f"{target}.*does not exist"):
        est.save(target)
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback of a CPU-only machine")
def test_a_model_saved_on_a_gpu_loads_on_the_cpu(tmp_path):
    """A file written with device='cuda' (as on a GPU machine) loads here on the CPU, with a warning."""
    X = np.random.default_rng(0).normal(size=(64, 2))
    est = VectorDiffusion(**TINY).fit(X)
    est.set_params(device="cuda")
    est.save(tmp_path / "gpu.anydiff")
    with pytest.warns(UserWarning, match="using the CPU"):
        loaded = ad.load(tmp_path / "gpu.anydiff")
    assert loaded.device == "cuda" and loaded._device().type == "cpu"
    np.testing.assert_array_equal(loaded.sample(5, random_state=0), est.set_params(device="cpu").sample(5, random_state=0))
    with pytest.raises(ValueError, match="no usable CUDA device"):
        loaded.fit(X)


def test_feature_names_are_saved(tmp_path):
    import pandas as pd

    X = pd.DataFrame(np.random.default_rng(0).normal(size=(64, 2)), columns=["height", "weight"])
    est = VectorDiffusion(**TINY).fit(X)
    est.save(tmp_path / "named.anydiff")
    loaded = ad.load(tmp_path / "named.anydiff")
    np.testing.assert_array_equal(loaded.feature_names_in_, ["height", "weight"])
    with pytest.raises(ValueError, match="feature names"):
        loaded.score_samples(X.rename(columns={"weight": "mass"}))
