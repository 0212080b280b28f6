"""Generation metrics for point clouds: Chamfer distance, EMD, MMD, COV and 1-NNA.

These are the metrics of PointFlow (Yang et al. 2019, ICCV) as used by DPM (Luo & Hu 2021), PVD
(Zhou et al. 2021) and LION (Zeng et al. 2022), built on MMD and COV of Achlioptas et al. (2018,
ICML) and on the 1-nearest-neighbour two-sample test (Lopez-Paz & Oquab 2017, ICLR).

Distances between two clouds ``X`` (P points) and ``Y`` (Q points):

* Chamfer distance (PointFlow's definition, squared distances, no factor 1/2)::

      CD(X, Y) = 1/P sum_{x in X} min_{y in Y} |x - y|**2 + 1/Q sum_{y in Y} min_{x in X} |x - y|**2

* Earth mover's distance, for P = Q: the mean Euclidean distance between matched points under the
  best one-to-one matching ``phi``::

      EMD(X, Y) = min_phi 1/P sum_{x in X} |x - phi(x)|

  computed exactly by linear assignment (``scipy.optimize.linear_sum_assignment``, Crouse 2016).
  PointFlow, PVD and LION use an approximate matching on the GPU (Fan et al. 2017), whose cost is
  not the exact minimum, and PVD issue #4 shows two such codes disagreeing by a factor of about
  ten: EMD values from different codes are not comparable, so say which one you used.

Set metrics, from the distance matrix ``D`` with **reference clouds as rows** and samples as columns
(shape ``(n_ref, n_sample)``):

* ``MMD = 1/n_ref sum_r min_s D[r, s]`` -- how close the best sample comes to each reference
  (fidelity);
* ``COV = |{argmin_r D[r, s] : s}| / n_ref`` -- the fraction of reference clouds that are the
  nearest reference of at least one sample (diversity; mode collapse lowers it);
* ``1-NNA`` -- the leave-one-out accuracy of the 1-nearest-neighbour classifier that tells samples
  from references in the union of both sets; 0.5 is best (indistinguishable), 1.0 worst.

MMD and COV are not symmetric in the two sets. The published evaluation code of PointFlow called
its pairwise-distance function with the two sets in swapped order, and code derived from it has
done so too (PointFlow issues #20 and #30, 3DQD issue #15); transposing ``D`` computes other
metrics and changes the numbers. Here the order is fixed by name: :func:`pairwise_distances`
takes ``(sample, reference)`` and returns reference rows.

Inputs are numpy arrays or torch tensors of shape ``(n, P, 3)``, or one cloud ``(P, 3)``.
Everything is computed in float64; results are numpy arrays or Python floats. Papers usually
report MMD-CD x 10^3 and MMD-EMD x 10^2 (see their table captions).
"""
from __future__ import annotations

import numbers

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

__all__ = ["chamfer_distance", "emd", "pairwise_distances", "mmd", "coverage", "one_nna",
           "cloud_stats", "normalize_clouds", "generation_metrics"]

_METRICS = ("cd", "emd")
_MODES = ("box", "sphere", "global")
# Dense CD (with a torch device): bytes of float64 squared distances per block of cloud pairs, plus
# as much again in temporaries; with 2048 points per cloud this is 4 pairs at once, about 0.5 GB.
_BLOCK_BYTES = 1 << 28


# -- validation --------------------------------------------------------------------------------
def _as_clouds(x, name: str) -> tuple[np.ndarray, bool]:
    """``x`` as float64 (n, P, 3) and whether a single (P, 3) cloud was given."""
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    try:
        x = np.asarray(x)
    except Exception as err:  # ragged lists and other non-arrays
        raise ValueError(f"{name} must be an array of shape (n, P, 3) or (P, 3): {err}") from err
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
    single = x.ndim == 2
    if x.ndim not in (2, 3) or x.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (n, P, 3) or (P, 3) (xyz coordinates on the last "
                         f"axis), got shape {tuple(x.shape)}")
    x = x[None] if single else x
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 clouds); give at least one cloud")
    if x.shape[1] < 2:
        raise ValueError(f"{name} has {x.shape[1]} point(s) per cloud; at least 2 are needed")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates; remove or repair those clouds")
    return x, single


def _as_matrix(D, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    D = np.asarray(D.detach().cpu().numpy() if torch.is_tensor(D) else D, dtype=np.float64)
    if D.ndim != 2 or D.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D distance matrix, got shape {D.shape}")
    if shape is not None and D.shape != shape:
        raise ValueError(f"{name} must have shape {shape} to match the other matrices, got {D.shape}")
    if not np.isfinite(D).all():
        raise ValueError(f"{name} contains NaN or infinite distances")
    return D


def _check_metric(metric) -> str:
    if metric not in _METRICS:
        raise ValueError(f"metric={metric!r} must be one of {list(_METRICS)}")
    return metric


def _pair_up(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices pairing two batches one to one (a batch of one pairs with every cloud of the other)."""
    if len(a) != len(b) and 1 not in (len(a), len(b)):
        raise ValueError(f"a holds {len(a)} clouds and b {len(b)}; give the same number (pairs are "
                         "compared one to one), or a single cloud on one side")
    n = max(len(a), len(b))
    return np.arange(n) % len(a), np.arange(n) % len(b)


def _same_size(p: int, q: int, names: str) -> None:
    if p != q:
        raise ValueError(f"EMD needs clouds of equal size, but {names} have {p} and {q} points; "
                         "subsample both to the same number of points")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_options(batch_size, workers) -> None:
    if batch_size is not None and not (_is_int(batch_size) and batch_size >= 1):
        raise ValueError(f"batch_size={batch_size!r} must be None (automatic) or a positive integer")
    if not (_is_int(workers) and (workers == -1 or workers >= 1)):
        raise ValueError(f"workers={workers!r} must be a positive integer, or -1 for all cores")


# -- distances between clouds ------------------------------------------------------------------
def _cd_kdtree(rows, cols, ii, jj, workers) -> np.ndarray:
    """CD of the pairs (rows[ii[k]], cols[jj[k]]) with one k-d tree per cloud (scipy)."""
    trees_r = {i: cKDTree(rows[i]) for i in np.unique(ii)}
    trees_c = {j: cKDTree(cols[j]) for j in np.unique(jj)}
    out = np.empty(len(ii))
    for k, (i, j) in enumerate(zip(ii, jj)):
        d_rc = trees_c[j].query(rows[i], workers=workers)[0]  # each point of rows[i] to cols[j]
        d_cr = trees_r[i].query(cols[j], workers=workers)[0]
        out[k] = np.mean(d_rc ** 2) + np.mean(d_cr ** 2)
    return out


def _cd_dense(rows, cols, ii, jj, batch_size, device) -> np.ndarray:
    """CD of the pairs with dense (P, Q) blocks of squared distances in torch on ``device``."""
    step = batch_size or max(1, _BLOCK_BYTES // (8 * rows.shape[1] * cols.shape[1]))
    R, C = torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)
    out = []
    for k in range(0, len(ii), step):
        a = R[torch.from_numpy(ii[k:k + step]).to(device)]
        b = C[torch.from_numpy(jj[k:k + step]).to(device)]
        # |x - y|^2 = |x|^2 + |y|^2 - 2 x.y, one (P, Q) matrix per pair
        d2 = (a * a).sum(-1)[:, :, None] + (b * b).sum(-1)[:, None, :] - 2 * a @ b.transpose(1, 2)
        d2 = d2.clamp_min_(0.0)
        out.append((d2.amin(dim=2).mean(dim=1) + d2.amin(dim=1).mean(dim=1)).cpu().numpy())
    return np.concatenate(out)


def _emd_pair(x: np.ndarray, y: np.ndarray) -> float:
    """Exact EMD of two (P, 3) clouds: mean Euclidean distance under the optimal matching."""
    cost = cdist(x, y)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def _pair_values(rows, cols, ii, jj, metric, batch_size=None, device=None, workers=1) -> np.ndarray:
    """d(rows[ii[k]], cols[jj[k]]) for every k, float64 (len(ii),)."""
    if len(ii) == 0:
        return np.empty(0)
    if metric == "emd":
        return np.array([_emd_pair(rows[i], cols[j]) for i, j in zip(ii, jj)])
    if device is None:
        return _cd_kdtree(rows, cols, ii, jj, workers)
    return _cd_dense(rows, cols, ii, jj, batch_size, torch.device(device))


def chamfer_distance(a, b, *, device: str | torch.device | None = None, batch_size: int | None = None,
                     workers: int = 1):
    """Chamfer distance between paired clouds, PointFlow's definition (squared distances).

    ``CD(X, Y) = mean_x min_y |x - y|**2 + mean_y min_x |x - y|**2`` (Fan et al. 2017; Yang et al.
    2019). Symmetric, zero for identical clouds; the two clouds may have different sizes.

    Parameters
    ----------
    a, b : array or tensor, shape (n, P, 3) and (n, Q, 3), or a single (P, 3) cloud on either
        side (compared with every cloud of the other).
    device, batch_size, workers : how to compute, as in :func:`pairwise_distances`.

    Returns
    -------
    float if both are single clouds, else ndarray (n,) float64: the CD of ``a[i]`` and ``b[i]``.
    """
    (a, single_a), (b, single_b) = _as_clouds(a, "a"), _as_clouds(b, "b")
    _check_options(batch_size, workers)
    out = _pair_values(a, b, *_pair_up(a, b), "cd", batch_size, device, workers)
    return float(out[0]) if single_a and single_b else out


def emd(a, b):
    """Exact earth mover's distance between paired clouds of equal size.

    ``EMD(X, Y) = min over bijections phi: X -> Y of 1/P sum_x |x - phi(x)|`` -- the mean Euclidean
    distance between matched points, PointFlow's normalisation (Yang et al. 2019), found exactly
    by linear assignment (O(P**3) per pair: about a second for P = 2048, so compare fewer points,
    e.g. 512, for large sets). PointFlow's code approximates the matching (Fan et al. 2017), so
    its values differ from these.

    Parameters
    ----------
    a, b : array or tensor, shape (n, P, 3) and (n, P, 3), or a single (P, 3) cloud on either side.

    Returns
    -------
    float if both are single clouds, else ndarray (n,) float64.
    """
    (a, single_a), (b, single_b) = _as_clouds(a, "a"), _as_clouds(b, "b")
    _same_size(a.shape[1], b.shape[1], "a and b")
    out = _pair_values(a, b, *_pair_up(a, b), "emd")
    return float(out[0]) if single_a and single_b else out


def _distance_matrix(rows: np.ndarray, cols: np.ndarray | None, metric: str, **how) -> np.ndarray:
    """D[i, j] = d(rows[i], cols[j]); ``cols=None`` means rows against themselves (symmetric: only
    i < j is computed, the diagonal is 0)."""
    symmetric = cols is None
    cols = rows if symmetric else cols
    if symmetric:
        ii, jj = np.triu_indices(len(rows), k=1)
    else:
        ii, jj = np.divmod(np.arange(len(rows) * len(cols)), len(cols))
    D = np.zeros((len(rows), len(cols)))
    D[ii, jj] = _pair_values(rows, cols, ii, jj, metric, **how)
    if symmetric:
        D[jj, ii] = D[ii, jj]
    return D


def pairwise_distances(sample, reference, metric: str = "cd", *, device: str | torch.device | None = None,
                       batch_size: int | None = None, workers: int = 1) -> np.ndarray:
    """All distances between the clouds of two sets, **reference clouds as rows**.

    ``D[r, s] = d(reference[r], sample[s])``, shape ``(n_ref, n_sample)``: the layout that
    :func:`mmd` and :func:`coverage` expect. The order is part of the definition: MMD and COV are
    not symmetric in the two sets, and swapped arguments in PointFlow's evaluation code changed
    the metrics it computed (PointFlow issues #20 and #30).

    Parameters
    ----------
    sample, reference : array or tensor, shape (n_sample, P, 3) and (n_ref, Q, 3)
    metric : "cd" or "emd"
        Chamfer distance (:func:`chamfer_distance`) or exact EMD (:func:`emd`, needs P = Q).
    device : None or a torch device, CD only
        None (default) computes each pair with scipy k-d trees on the CPU: memory O(n P), about
        5-10 ms per pair of 2048-point clouds on one core, so 500 x 500 clouds (250,000 pairs) take
        tens of minutes on one core (use ``workers``). A torch device (``"cuda"``, or ``"cpu"``)
        computes dense ``P x Q`` blocks of squared distances there, in float64: the fast choice on
        a GPU, slower than the k-d trees on a CPU.
    batch_size : int, optional, CD with a ``device`` only
        Cloud pairs whose ``P x Q`` blocks are held at once; the default keeps about 0.5 GB
        (4 pairs of 2048-point clouds).
    workers : int, CD without a ``device`` only: threads for the k-d tree queries (-1: all cores).

    Returns
    -------
    ndarray, shape (n_ref, n_sample), float64.

    Notes
    -----
    EMD solves one ``P x P`` assignment per pair, O(P**3): about a second per pair at P = 2048,
    so 500 x 500 pairs take days. Subsample the clouds (e.g. to 512 points) for EMD on large sets.
    """
    sample, _ = _as_clouds(sample, "sample")
    reference, _ = _as_clouds(reference, "reference")
    if _check_metric(metric) == "emd":
        _same_size(reference.shape[1], sample.shape[1], "reference and sample clouds")
    _check_options(batch_size, workers)
    return _distance_matrix(reference, sample, metric, batch_size=batch_size, device=device, workers=workers)


# -- set metrics -------------------------------------------------------------------------------
def mmd(D) -> float:
    """Minimum matching distance (Achlioptas et al. 2018): ``1/n_ref sum_r min_s D[r, s]``.

    Parameters
    ----------
    D : array, shape (n_ref, n_sample), reference rows (:func:`pairwise_distances`).
    """
    D = _as_matrix(D, "D")
    return float(D.min(axis=1).mean())


def coverage(D) -> float:
    """Coverage (Achlioptas et al. 2018): the fraction of reference clouds that are the nearest
    reference of at least one sample, ``|{argmin_r D[r, s]}| / n_ref`` (ties go to the first row).

    Parameters
    ----------
    D : array, shape (n_ref, n_sample), reference rows (:func:`pairwise_distances`).
    """
    D = _as_matrix(D, "D")
    return len(np.unique(D.argmin(axis=0))) / D.shape[0]


def one_nna(D_rr, D_ss, D_rs) -> float:
    """1-nearest-neighbour accuracy (Lopez-Paz & Oquab 2017; Yang et al. 2019).

    Each cloud of the union of references and samples is classified by the set of its nearest
    other cloud (leave-one-out); the result is the fraction classified correctly. 0.5 means the
    sets cannot be told apart; 1.0 means every cloud's nearest neighbour is in its own set
    (e.g. mode collapse or a shifted distribution); values well below 0.5 mean that samples
    sit closer to references than references to each other (e.g. memorised training clouds).
    Ties go to the first cloud in the order (references, samples).

    Parameters
    ----------
    D_rr : array (n_ref, n_ref), distances among references (the diagonal is ignored).
    D_ss : array (n_sample, n_sample), distances among samples (the diagonal is ignored).
    D_rs : array (n_ref, n_sample), reference rows, as :func:`pairwise_distances` returns.
    """
    D_rs = _as_matrix(D_rs, "D_rs")
    n_r, n_s = D_rs.shape
    D_rr = _as_matrix(D_rr, "D_rr", (n_r, n_r))
    D_ss = _as_matrix(D_ss, "D_ss", (n_s, n_s))
    M = np.block([[D_rr, D_rs], [D_rs.T, D_ss]])
    np.fill_diagonal(M, np.inf)  # leave one out
    is_ref = np.arange(n_r + n_s) < n_r
    return float((is_ref[M.argmin(axis=1)] == is_ref).mean())


# -- normalization -----------------------------------------------------------------------------
def cloud_stats(clouds, mode: str = "box", *, name: str = "clouds") -> np.ndarray:
    """The centre and scale that :func:`normalize_clouds` uses, per cloud (one row for "global").

    Parameters
    ----------
    clouds : list of float arrays ``(n_i, 3)`` (sizes may differ), already checked.
    mode : "box", "sphere" or "global" (see :func:`normalize_clouds`).
    name : the argument named in errors.

    Returns
    -------
    ndarray, float64, ``(n, 4)`` (``(1, 4)`` for "global"): x, y, z of the centre, then the scale.
    """
    if mode not in _MODES:
        raise ValueError(f"mode={mode!r} must be one of {list(_MODES)}")
    if mode == "global":
        pts = np.concatenate([np.asarray(c, dtype=np.float64) for c in clouds])
        centre = pts.mean(axis=0)
        rows = [np.r_[centre, np.sqrt(((pts - centre) ** 2).mean())]]
    elif mode == "box":
        rows = [np.r_[(c.min(0) + c.max(0)) / 2, ((c.max(0) - c.min(0)) / 2).max()] for c in clouds]
    else:
        rows = [np.r_[c.mean(0), np.linalg.norm(c - c.mean(0), axis=1).max()] for c in clouds]
    stats = np.asarray(rows, dtype=np.float64)
    flat = np.flatnonzero(~(stats[:, 3] > 0))
    if flat.size:
        raise ValueError(f"{name} has no extent (all points equal) in cloud(s) {flat[:5].tolist()}; such clouds "
                         "cannot be normalized: remove them")
    return stats


def normalize_clouds(clouds, mode: str = "box", *, reference=None) -> np.ndarray:
    """Translate and scale clouds, as evaluation protocols do before computing the metrics.

    * ``"box"`` -- per cloud: centre the axis-aligned bounding box at the origin and divide by its
      largest half-extent, so the cloud fits ``[-1, 1]**3`` and touches it on its longest axis
      (LION's per-shape normalization, Zeng et al. 2022);
    * ``"sphere"`` -- per cloud: subtract the mean point and divide by the largest norm, so the
      cloud fits the unit ball and touches it;
    * ``"global"`` -- one translation and one scale for the whole set: subtract the mean of all
      points and divide by ``sqrt(mean |x - mean|**2 / 3)``, the standard deviation of all
      coordinates after centring each axis (close to PointFlow's ShapeNet normalization). Shapes
      keep their relative positions and sizes. With ``reference`` the mean and scale are
      computed from ``reference`` instead, so that a sample set can be put on its reference's
      scale.

    Parameters
    ----------
    clouds : array or tensor, shape (n, P, 3) or (P, 3)
    mode : "box", "sphere" or "global"
    reference : array or tensor (m, Q, 3), optional; only with ``mode="global"``.

    Returns
    -------
    ndarray, float64, shaped like ``clouds``.
    """
    x, single = _as_clouds(clouds, "clouds")
    if mode not in _MODES:
        raise ValueError(f"mode={mode!r} must be one of {list(_MODES)}")
    if reference is not None and mode != "global":
        raise ValueError(f"reference is used only by mode='global', not mode={mode!r}; drop it")
    if mode == "global":
        ref = x if reference is None else _as_clouds(reference, "reference")[0]
        stats = cloud_stats(list(ref), "global", name="reference" if reference is not None else "clouds")
        stats = np.broadcast_to(stats, (len(x), 4))
    else:
        stats = cloud_stats(list(x), mode, name="clouds")
    centre, scale = stats[:, None, :3], stats[:, 3, None, None]
    out = (x - centre) / scale
    return out[0] if single else out


def generation_metrics(sample, reference, *, metric: str | tuple[str, ...] = "cd",
                       normalize: str | None = None, device: str | torch.device | None = None,
                       batch_size: int | None = None, workers: int = 1) -> dict[str, float]:
    """MMD, COV and 1-NNA of a sample set against a reference set (Yang et al. 2019).

    Computes ``D_rs`` (reference rows), ``D_rr`` and ``D_ss`` with :func:`pairwise_distances` and
    applies :func:`mmd`, :func:`coverage` and :func:`one_nna`.

    Parameters
    ----------
    sample, reference : array or tensor, shape (n_sample, P, 3) and (n_ref, Q, 3)
        Use as many samples as references: COV and 1-NNA depend on the two sizes.
    metric : "cd" (default), "emd" or a tuple of both. EMD needs P = Q and is slow (see
        :func:`pairwise_distances`).
    normalize : None, "box", "sphere" or "global"
        Applied to both sets first (:func:`normalize_clouds`; for "global" the reference's mean
        and scale are used for both, so scale errors of the samples still count). The choice
        alone moves published 1-NNA values by several points: LION (Zeng et al. 2022) evaluates
        its Table 1 with a global normalization and its Table 2 with a per-shape box (LION issue
        #10), and the two tables are not comparable. A per-shape normalization also hides errors
        of size and position. Always report the normalization with the numbers.
    device, batch_size, workers : how to compute, as in :func:`pairwise_distances`.

    Returns
    -------
    dict with keys ``"MMD-CD"``, ``"COV-CD"``, ``"1-NNA-CD"`` (and the same with ``-EMD``): MMD in
    the metric's units (CD: squared length; EMD: length), COV and 1-NNA as fractions in [0, 1].
    """
    metrics = (metric,) if isinstance(metric, str) else tuple(metric)
    if not metrics:
        raise ValueError("metric must name at least one of 'cd', 'emd'")
    for m in metrics:
        _check_metric(m)
    sample, _ = _as_clouds(sample, "sample")
    reference, _ = _as_clouds(reference, "reference")
    if normalize is not None:
        if normalize not in _MODES:
            raise ValueError(f"normalize={normalize!r} must be None or one of {list(_MODES)}")
        ref_stats = reference if normalize == "global" else None
        sample = normalize_clouds(sample, normalize, reference=ref_stats)
        reference = normalize_clouds(reference, normalize, reference=ref_stats)
    _check_options(batch_size, workers)
    how = {"device": device, "batch_size": batch_size, "workers": workers}
    out = {}
    for m in dict.fromkeys(metrics):  # distinct, in order
        if m == "emd":
            _same_size(reference.shape[1], sample.shape[1], "reference and sample clouds")
        D_rs = _distance_matrix(reference, sample, m, **how)
        D_rr = _distance_matrix(reference, None, m, **how)
        D_ss = _distance_matrix(sample, None, m, **how)
        name = m.upper()
        out[f"MMD-{name}"] = mmd(D_rs)
        out[f"COV-{name}"] = coverage(D_rs)
        out[f"1-NNA-{name}"] = one_nna(D_rr, D_ss, D_rs)
    return out
