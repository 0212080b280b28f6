"""Point-cloud metrics against brute-force references written here with plain loops, identities,
normalization modes and argument checks."""
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from anydiff.points.metrics import (chamfer_distance, coverage, emd, generation_metrics, mmd,
                                    normalize_clouds, one_nna, pairwise_distances)

FAST = settings(max_examples=25, deadline=None)
coords = st.floats(-10, 10, allow_nan=False, width=64)


def clouds(n_points=st.integers(2, 12)):
    return n_points.flatmap(lambda p: arrays(np.float64, (p, 3), elements=coords))


def random_sets(seed, n, p, shift=0.0, scale=1.0):
    return shift + scale * np.random.default_rng(seed).standard_normal((n, p, 3))


# -- brute-force references -------------------------------------------------------------------------
def chamfer_loops(x, y):
    d = np.array([[np.sum((xi - yj) ** 2) for yj in y] for xi in x])
    return d.min(axis=1).mean() + d.min(axis=0).mean()


def emd_permutations(x, y):
    n = len(x)
    return min(np.mean([np.linalg.norm(x[i] - y[perm[i]]) for i in range(n)])
               for perm in itertools.permutations(range(n)))


def mmd_loops(D):
    return np.mean([min(D[r, s] for s in range(D.shape[1])) for r in range(D.shape[0])])


def coverage_loops(D):
    nearest = set()
    for s in range(D.shape[1]):
        nearest.add(min(range(D.shape[0]), key=lambda r: D[r, s]))
    return len(nearest) / D.shape[0]


def one_nna_loops(D_rr, D_ss, D_rs):
    n_r, n_s = D_rs.shape
    items = [("r", i) for i in range(n_r)] + [("s", j) for j in range(n_s)]

    def dist(a, b):
        (ka, i), (kb, j) = a, b
        if ka == kb == "r":
            return D_rr[i, j]
        if ka == kb == "s":
            return D_ss[i, j]
        return D_rs[i, j] if ka == "r" else D_rs[j, i]

    correct = 0
    for a in items:
        nearest = min((b for b in items if b != a), key=lambda b: dist(a, b))
        correct += nearest[0] == a[0]
    return correct / len(items)


# the ways to compute CD: k-d trees (default, any number of threads) or dense torch blocks
HOW = [{}, {"workers": 2}, {"device": "cpu"}, {"device": "cpu", "batch_size": 1},
       {"device": "cpu", "batch_size": 2}, {"device": "cpu", "batch_size": 1000}]


def symmetric(rng, n):
    A = rng.random((n, n))
    return A + A.T


# -- Chamfer distance ---------------------------------------------------------------------------
@FAST
@given(clouds(), clouds())
def test_chamfer_matches_brute_force_and_is_symmetric(x, y):
    cd = chamfer_distance(x, y)
    assert isinstance(cd, float)
    assert cd == pytest.approx(chamfer_loops(x, y), rel=1e-9, abs=1e-9)
    assert cd == pytest.approx(chamfer_distance(y, x), rel=1e-12, abs=1e-12)
    assert chamfer_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_chamfer_batches_pairs_one_to_one_and_broadcasts_a_single_cloud():
    a, b = random_sets(0, 5, 7), random_sets(1, 5, 9)
    expected = np.array([chamfer_loops(x, y) for x, y in zip(a, b)])
    for how in HOW:
        np.testing.assert_allclose(chamfer_distance(a, b, **how), expected, rtol=1e-12)
    np.testing.assert_allclose(chamfer_distance(a[2], b), [chamfer_loops(a[2], y) for y in b], rtol=1e-12)
    np.testing.assert_allclose(chamfer_distance(torch.from_numpy(a), torch.from_numpy(b).float()),
                               chamfer_distance(a, b.astype(np.float32)), rtol=1e-12)
    x, y = np.array([[0.0, 0, 0], [1, 0, 0]]), np.array([[0.0, 0, 0], [3, 0, 0]])
    assert chamfer_distance(x, y) == pytest.approx((0 + 1) / 2 + (0 + 4) / 2)  # squared, means


# -- EMD ----------------------------------------------------------------------------------------------
@FAST
@given(st.integers(2, 6).flatmap(lambda p: st.tuples(arrays(np.float64, (p, 3), elements=coords),
                                                      arrays(np.float64, (p, 3), elements=coords))))
def test_emd_matches_all_permutations(pair):
    x, y = pair
    assert emd(x, y) == pytest.approx(emd_permutations(x, y), rel=1e-9, abs=1e-9)
    assert emd(x, y) == pytest.approx(emd(y, x), rel=1e-12, abs=1e-12)
    assert emd(x, x[::-1]) == pytest.approx(0.0, abs=1e-12)  # same cloud, other order


def test_emd_batches_and_known_value():
    a, b = random_sets(2, 3, 5), random_sets(3, 3, 5)
    np.testing.assert_allclose(emd(a, b), [emd_permutations(x, y) for x, y in zip(a, b)], rtol=1e-9)
    assert emd(a[0] + np.array([0.0, 3.0, 4.0]), a[0]) == pytest.approx(5.0)  # a shift moves every point by 5
    with pytest.raises(ValueError, match="a and b have 5 and 6 points"):
        emd(a[0], random_sets(4, 1, 6)[0])


# -- pairwise distances ---------------------------------------------------------------------------
def test_pairwise_cd_has_reference_rows_and_batching_does_not_change_it():
    sample, reference = random_sets(5, 4, 6), random_sets(6, 3, 8)
    D = pairwise_distances(sample, reference)
    assert D.shape == (3, 4)
    expected = np.array([[chamfer_loops(r, s) for s in sample] for r in reference])
    np.testing.assert_allclose(D, expected, rtol=1e-12)
    for how in HOW:  # k-d trees and dense blocks of any size give the same matrix
        np.testing.assert_allclose(pairwise_distances(sample, reference, **how), D, rtol=1e-12)


def test_pairwise_emd_has_reference_rows():
    sample, reference = random_sets(7, 3, 5), random_sets(8, 2, 5)
    D = pairwise_distances(sample, reference, "emd")
    assert D.shape == (2, 3)
    np.testing.assert_allclose(D, [[emd_permutations(r, s) for s in sample] for r in reference], rtol=1e-9)
    with pytest.raises(ValueError, match="EMD needs clouds of equal size"):
        pairwise_distances(random_sets(7, 3, 6), reference, "emd")


# -- MMD, COV, 1-NNA -----------------------------------------------------------------------------------
@FAST
@given(st.integers(1, 7), st.integers(1, 7), st.integers(0, 2 ** 32 - 1))
def test_set_metrics_match_loops(n_r, n_s, seed):
    rng = np.random.default_rng(seed)  # continuous values: no ties
    D_rs, D_rr, D_ss = rng.random((n_r, n_s)), symmetric(rng, n_r), symmetric(rng, n_s)
    assert mmd(D_rs) == pytest.approx(mmd_loops(D_rs), rel=1e-12)
    assert coverage(D_rs) == coverage_loops(D_rs)
    if n_r + n_s >= 2:
        assert one_nna(D_rr, D_ss, D_rs) == one_nna_loops(D_rr, D_ss, D_rs)


def test_metric_identities():
    ref = random_sets(9, 12, 32)
    D = pairwise_distances(ref, ref)
    assert coverage(D) == 1.0 and mmd(D) == pytest.approx(0.0, abs=1e-12)
    collapsed = np.repeat(ref[:1], 12, axis=0)  # every sample is the same reference cloud
    assert coverage(pairwise_distances(collapsed, ref)) == pytest.approx(1 / 12)
    far = generation_metrics(ref + 100.0, ref)
    assert far["1-NNA-CD"] == 1.0 and far["COV-CD"] == pytest.approx(1 / 12)
    same = generation_metrics(random_sets(10, 30, 64), random_sets(11, 30, 64))
    assert abs(same["1-NNA-CD"] - 0.5) < 0.2
    shifted = generation_metrics(random_sets(10, 30, 64, shift=1.0), random_sets(11, 30, 64))
    assert shifted["1-NNA-CD"] > 0.9
    assert shifted["MMD-CD"] > same["MMD-CD"]


def test_generation_metrics_equal_the_parts():
    sample, reference = random_sets(12, 5, 6), random_sets(13, 4, 6)
    out = generation_metrics(sample, reference, metric=("cd", "emd"))
    dense = generation_metrics(sample, reference, metric=("cd", "emd"), device="cpu", batch_size=3)
    assert dense == pytest.approx(out, rel=1e-12)
    assert set(out) == {f"{m}-{d}" for m in ("MMD", "COV", "1-NNA") for d in ("CD", "EMD")}
    for metric in ("cd", "emd"):
        D_rs = pairwise_distances(sample, reference, metric)
        D_rr = pairwise_distances(reference, reference, metric)
        D_ss = pairwise_distances(sample, sample, metric)
        name = metric.upper()
        assert out[f"MMD-{name}"] == pytest.approx(mmd(D_rs), rel=1e-12)
        assert out[f"COV-{name}"] == coverage(D_rs)
        assert out[f"1-NNA-{name}"] == one_nna(D_rr, D_ss, D_rs)


def test_generation_metrics_normalize_removes_scale_per_shape():
    sample, reference = random_sets(14, 6, 16), random_sets(15, 6, 16)
    box = generation_metrics(sample, reference, normalize="box")
    # a per-shape normalization forgets positions and sizes
    moved = generation_metrics(3 * sample + 1.0, reference * 0.5, normalize="box")
    assert moved == pytest.approx(box, rel=1e-9)
    assert generation_metrics(3 * sample + 1.0, reference * 0.5)["MMD-CD"] != pytest.approx(box["MMD-CD"])
    # "global" is one similarity transform taken from the reference: CD scales by 1 / s^2,
    # COV and 1-NNA do not change, and a sample at 3x the size stays 3x the size
    pts = reference.reshape(-1, 3)
    s2 = ((pts - pts.mean(axis=0)) ** 2).sum(axis=1).mean() / 3
    raw, g = generation_metrics(sample, reference), generation_metrics(sample, reference, normalize="global")
    assert g["MMD-CD"] == pytest.approx(raw["MMD-CD"] / s2, rel=1e-9)
    assert (g["COV-CD"], g["1-NNA-CD"]) == (raw["COV-CD"], raw["1-NNA-CD"])
    big = generation_metrics(3 * sample, reference, normalize="global")
    assert big["MMD-CD"] > 2 * g["MMD-CD"]


# -- normalization -----------------------------------------------------------------------------------
@FAST
@given(st.floats(0.1, 10), arrays(np.float64, 3, elements=st.floats(-5, 5)), st.integers(0, 1000))
def test_per_shape_modes_do_what_they_say(s, t, seed):
    x = random_sets(seed, 3, 20, scale=np.array([1.0, 2.0, 0.5]))
    for mode in ("box", "sphere"):
        y = normalize_clouds(x, mode)
        np.testing.assert_allclose(normalize_clouds(s * x + t, mode), y, atol=1e-9)  # invariant
    y = normalize_clouds(x, "box")
    lo, hi = y.min(axis=1), y.max(axis=1)
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-12)
    np.testing.assert_allclose((hi - lo).max(axis=1), 2.0)
    assert np.all(np.abs(y) <= 1 + 1e-12)
    y = normalize_clouds(x, "sphere")
    np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(y, axis=2).max(axis=1), 1.0)


def test_global_mode_keeps_relative_sizes():
    x = random_sets(16, 4, 50) * np.array([1.0, 2.0, 3.0, 4.0])[:, None, None] + 5.0
    y = normalize_clouds(x, "global")
    ext = np.ptp(y, axis=1).max(axis=1) / np.ptp(x, axis=1).max(axis=1)
    np.testing.assert_allclose(ext, ext[0])  # one scale for all
    np.testing.assert_allclose(y.reshape(-1, 3).mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.sqrt((y ** 2).mean()), 1.0)
    # with a reference, the reference's centre and scale are used
    np.testing.assert_allclose(normalize_clouds(x, "global", reference=x), y)
    pts = x.reshape(-1, 3)
    c, s = pts.mean(axis=0), np.sqrt(((pts - pts.mean(axis=0)) ** 2).sum(axis=1).mean() / 3)
    np.testing.assert_allclose(normalize_clouds(2 * x, "global", reference=x), (2 * x - c) / s)
    single = normalize_clouds(torch.from_numpy(x[0]), "box")
    assert single.shape == (50, 3)


# -- bad input ----------------------------------------------------------------------------------------
GOOD = np.random.default_rng(0).standard_normal((2, 5, 3))


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 5, 2)), r"sample must have shape \(n, P, 3\)"),
    (np.zeros((2, 5, 3, 1)), r"sample must have shape"),
    (np.zeros(3), r"sample must have shape"),
    (np.zeros((0, 5, 3)), "sample is empty"),
    (np.zeros((2, 1, 3)), "sample has 1 point"),
    (np.where(np.arange(30).reshape(2, 5, 3) == 7, np.nan, 0.0), "sample contains NaN"),
    (np.full((2, 5, 3), np.inf), "sample contains NaN or infinite"),
    (np.array([["a", "b", "c"]] * 3), "sample must hold real numbers"),
])
def test_bad_clouds_name_the_argument(bad, match):
    with pytest.raises(ValueError, match=match):
        pairwise_distances(bad, GOOD)
    with pytest.raises(ValueError, match=match.replace("sample", "reference")):
        generation_metrics(GOOD, bad)
    with pytest.raises(ValueError, match=match.replace("sample", "clouds")):
        normalize_clouds(bad, "box")


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="metric='l1'"):
        pairwise_distances(GOOD, GOOD, "l1")
    with pytest.raises(ValueError, match="metric='l1'"):
        generation_metrics(GOOD, GOOD, metric=("cd", "l1"))
    with pytest.raises(ValueError, match="batch_size=0"):
        pairwise_distances(GOOD, GOOD, device="cpu", batch_size=0)
    with pytest.raises(ValueError, match="workers=0"):
        generation_metrics(GOOD, GOOD, workers=0)
    with pytest.raises(ValueError, match="workers=1.5"):
        chamfer_distance(GOOD, GOOD, workers=1.5)
    with pytest.raises(ValueError, match="a holds 2 clouds and b 3"):
        chamfer_distance(GOOD, np.zeros((3, 5, 3)))
    with pytest.raises(ValueError, match="b has 1 point"):
        chamfer_distance(GOOD, np.zeros((2, 1, 3)))
    with pytest.raises(ValueError, match="mode='cube'"):
        normalize_clouds(GOOD, "cube")
    with pytest.raises(ValueError, match="normalize='cube'"):
        generation_metrics(GOOD, GOOD, normalize="cube")
    with pytest.raises(ValueError, match="reference is used only by mode='global'"):
        normalize_clouds(GOOD, "box", reference=GOOD)
    with pytest.raises(ValueError, match=r"clouds has no extent .* \[1\]"):
        normalize_clouds(np.stack([GOOD[0], np.ones((5, 3))]), "sphere")
    with pytest.raises(ValueError, match="D must be a non-empty 2-D"):
        mmd(np.zeros(4))
    with pytest.raises(ValueError, match="D contains NaN"):
        coverage(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match=r"D_ss must have shape \(3, 3\)"):
        one_nna(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 3)))
