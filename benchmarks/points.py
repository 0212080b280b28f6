"""Point-cloud benchmark: PointCloudDiffusion (set transformer and latent diffusion) on ProcShapes.

For each seed, ``train-per-class`` and ``test-per-class`` clouds of each class are drawn with
``anydiff.points.make_shapes`` (seeded per seed and class; upright, the default anisotropy), and
one class-conditional model per architecture is fitted on the training clouds with their labels.
It then draws as many samples of each class (``y`` = the class, no guidance) as there are test
clouds of that class.

Generation scores (``anydiff.points.metrics``; **reference = the test clouds, as the rows** of
the distance matrices, PointFlow issue #30): 1-NNA, COV and MMD under the Chamfer distance
(PointFlow's: squared distances, no 1/2) and under the exact EMD (linear assignment, on a stated
random subsample of each cloud's points: exact EMD is O(P^3) per pair), per class (the class's
samples against the class's test clouds) and over all classes (all samples against all test
clouds). The "floor" row is the training set itself: the first ``test-per-class`` training clouds
of each class against the same test set, i.e. a perfect model's sample of the same size.

Two normalizations, since published numbers differ by it:

* ``box``: every cloud on its own (bounding-box centre at 0, largest half-extent 1; LION's
  Table 2 protocol). Sizes and positions no longer count.
* ``global``: one translation and scale for every set, those of the whole test set (all classes):
  sizes count. (1-NNA and COV do not change under a common scale; MMD is in these units.)

MMD-CD is reported x 10^3 and MMD-EMD x 10^2, as in the papers; 1-NNA and COV in %.

Completion: for the first ``complete-per-class`` test clouds of each class, the partial scan is
the half of the cloud on one side of a random plane through its bounding-box centre; each model
completes it to the full number of points (``complete``; the observed points must come back
exactly: the largest deviation is reported). Scores, in the full test cloud's box units (its
largest half-extent = 1): CD of the completed cloud to the full test cloud, and CD of the
generated points to the missing half. Baselines: the partial scan alone; the scan plus its mirror
image in the cutting plane; the training cloud nearest to the scan (one-sided CD from the scan,
all classes). The last two use knowledge the models do not get: the cutting plane, and the frame
of the full shape (ProcShapes clouds are centred at their box centre, in training and test alike),
whereas ``complete`` places a scan by its own box centre and the median training scale.

Protocols (``--protocol``; every size can be overridden):

* ``cpu`` (default): sphere, box, chair, airplane; 256 points; 32 training and 8 test clouds per
  class; hidden width 64; batch 16; transformer 60 steps, latent 300 steps (each of its two
  stages), about equal training time on one CPU core; EMD on 128 of the 256 points;
  2 completions per class with RePaint 25 steps x 5 resamples. 11 min on 2 shared cores (load
  average about 4); a seed took 3.1 to 4.1 min with the same sizes, depending on the other jobs.
  A smoke-level training budget: far too few steps to train either model.
* ``papers`` (a GPU): airplane, chair; 2048 points (train and evaluation, as PointFlow / PVD /
  LION); 500 training and 48 test clouds per class; default networks (hidden 128, depth 4);
  batch 32, 2000 steps each; EMD on 256 of the 2048 points, computed by a pool of CPU processes
  while the GPU trains the next seed; 16 completions per class with the default RePaint (50 x 10).
  Stops starting new seeds when ``--time-budget`` would be exceeded and prints the tables of the
  seeds done (also on SIGTERM, e.g. from ``timeout``).
* ``--quick``: a smoke run of every code path, well under a minute.

    OMP_NUM_THREADS=1 python benchmarks/points.py                 # the CPU table, about 11 min
    OMP_NUM_THREADS=1 python benchmarks/points.py --quick         # smoke run
    python benchmarks/points.py --protocol papers --device cuda   # benchmarks/points_gpu.sh
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_revision  # noqa: E402

ARCHS = ("transformer", "latent")
NORMS = ("box", "global")
TARGET = 0.55  # 1-NNA-CD, issue #12
PAPERS = "LION 67.4 % airplane / 53.7 % chair; PVD 73.8 / 56.3; DPM 76.4 / 60.1 (1-NNA-CD, ShapeNet)"

PROTOCOLS = {
    "cpu": dict(classes="sphere,box,chair,airplane", points=256, train_per_class=32, test_per_class=8,
                seeds=3, max_steps="transformer=60,latent=300", batch_size=16, hidden=64, depth=4,
                emd_points=128, complete_per_class=2, repaint_steps=25, repaint_resample=5,
                sampling_steps=50, chunk_size=16, workers=1, time_budget=0.0, progress=False),
    "papers": dict(classes="airplane,chair", points=2048, train_per_class=500, test_per_class=48,
                   seeds=3, max_steps="transformer=2000,latent=2000", batch_size=32, hidden=128, depth=4,
                   emd_points=256, complete_per_class=16, repaint_steps=50, repaint_resample=10,
                   sampling_steps=50, chunk_size=64, workers=-1, time_budget=0.0, progress=True),
    "quick": dict(classes="sphere,box", points=64, train_per_class=8, test_per_class=4, seeds=1,
                  max_steps="transformer=4,latent=6", batch_size=8, hidden=32, depth=2, emd_points=32,
                  complete_per_class=2, repaint_steps=4, repaint_resample=2, sampling_steps=5,
                  chunk_size=16, workers=1, time_budget=0.0, progress=False),
}


class Interrupted(Exception):
    """SIGTERM (``timeout``) or SIGINT: print what is done and stop."""


def _on_signal(signum, frame):  # noqa: ARG001
    raise Interrupted(signal.Signals(signum).name)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def make_data(cfg, seed: int) -> dict:
    """Training and test clouds, class by class (test and samples share the class order)."""
    from anydiff.points import make_shapes
    tr, te = [], []
    for k, c in enumerate(cfg.classes):
        X = make_shapes(cfg.train_per_class + cfg.test_per_class, n_points=cfg.points, classes=[c],
                        random_state=10_000 * seed + k)
        tr.append(X[:cfg.train_per_class])
        te.append(X[cfg.train_per_class:])
    rep = lambda n: np.repeat(np.asarray(cfg.classes), n)  # noqa: E731
    X_tr, X_te = np.concatenate(tr), np.concatenate(te)
    floor = np.concatenate([x[:cfg.test_per_class] for x in tr])
    return {"X_train": X_tr, "y_train": rep(cfg.train_per_class), "X_test": X_te, "y_test": rep(cfg.test_per_class),
            "floor": floor}


# ---------------------------------------------------------------------------------------------
# Distances: CD through metrics.pairwise_distances, exact EMD on a subsample (optionally a pool)
# ---------------------------------------------------------------------------------------------

_POOL = None


def _emd_chunk(args) -> np.ndarray:
    from anydiff.points.metrics import emd
    A, B, ii, jj = args
    return np.asarray(emd(A[ii], B[jj]), dtype=np.float64).reshape(-1)


class Matrix:
    """A distance matrix, computed now or by the EMD pool (``get`` waits, ``ready`` does not)."""

    def __init__(self, value=None, shape=None, ii=None, jj=None, symmetric=False, jobs=None):
        self.value, self.shape, self.ii, self.jj, self.symmetric, self.jobs = value, shape, ii, jj, symmetric, jobs

    def ready(self) -> bool:
        return self.value is not None or all(j.ready() for j in self.jobs)

    def get(self) -> np.ndarray:
        if self.value is None:
            vals = np.concatenate([j.get() for j in self.jobs]) if self.jobs else np.empty(0)
            D = np.zeros(self.shape)
            D[self.ii, self.jj] = vals
            if self.symmetric:
                D[self.jj, self.ii] = vals
            self.value, self.jobs = D, None
        return self.value


def cd_matrix(sample: np.ndarray, ref: np.ndarray, cfg) -> Matrix:
    """CD, reference rows: k-d trees on the CPU, dense float64 blocks on a GPU."""
    from anydiff.points.metrics import pairwise_distances
    gpu = cfg.device.startswith("cuda")
    D = pairwise_distances(sample, ref, "cd", device=cfg.device if gpu else None, batch_size=64 if gpu else None)
    return Matrix(value=D)


def emd_matrix(sample: np.ndarray, ref: np.ndarray | None, cfg) -> Matrix:
    """Exact EMD, reference rows; ``ref=None``: ``sample`` against itself (upper triangle only)."""
    symmetric = ref is None
    rows = sample if symmetric else ref
    if symmetric:
        ii, jj = np.triu_indices(len(rows), k=1)
    else:
        ii, jj = np.divmod(np.arange(len(rows) * len(sample)), len(sample))
    shape = (len(rows), len(sample))
    if _POOL is None:
        vals = _emd_chunk((rows, sample, ii, jj)) if len(ii) else np.empty(0)
        D = np.zeros(shape)
        D[ii, jj] = vals
        if symmetric:
            D[jj, ii] = vals
        return Matrix(value=D)
    n_chunks = max(1, min(len(ii), cfg.workers * 4))
    jobs = [_POOL.apply_async(_emd_chunk, ((rows, sample, a, b),))
            for a, b in zip(np.array_split(ii, n_chunks), np.array_split(jj, n_chunks)) if len(a)]
    return Matrix(shape=shape, ii=ii, jj=jj, symmetric=symmetric, jobs=jobs)


def subsample(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` points of each cloud, drawn without replacement (fixed seed)."""
    if k >= X.shape[1]:
        return X
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.choice(X.shape[1], k, replace=False) for _ in range(len(X))])
    return np.take_along_axis(X, idx[:, :, None], axis=1)


def test_distances(test: np.ndarray, cfg, seed: int) -> dict:
    """Per normalization: the normalized test set (all points, EMD subsample) and its matrices."""
    from anydiff.points.metrics import normalize_clouds
    out = {}
    for norm in NORMS:
        T = normalize_clouds(test, norm, reference=test if norm == "global" else None)
        T_e = subsample(T, cfg.emd_points, seed)
        out[norm] = {"_test": (test, T, T_e), "cd": {"TT": cd_matrix(T, T, cfg)},
                     "emd": {"TT": emd_matrix(T_e, None, cfg)}}
    return out


def add_method(dist: dict, method: str, X: np.ndarray, cfg, seed: int) -> None:
    """(D_rs, D_ss) of a sample set against the test set, per normalization and metric."""
    from anydiff.points.metrics import normalize_clouds
    for norm, d in dist.items():
        test, T, T_e = d["_test"]
        S = normalize_clouds(X, norm, reference=test if norm == "global" else None)
        S_e = subsample(S, cfg.emd_points, seed + 1 + len(d["cd"]))
        d["cd"][method] = (cd_matrix(S, T, cfg), cd_matrix(S, S, cfg))
        d["emd"][method] = (emd_matrix(S_e, T_e, cfg), emd_matrix(S_e, None, cfg))


def set_scores(dist: dict, method: str, groups: dict[str, np.ndarray], wait: bool) -> dict:
    """{group: {metric name: value}}; EMD entries absent when not ready and ``wait`` is False."""
    from anydiff.points.metrics import coverage, mmd, one_nna
    out = {}
    for metric, d in dist.items():
        if metric == "_test":
            continue
        TT, (RS, SS) = d["TT"], d[method]
        if not wait and not all(x.ready() for x in (TT, RS, SS)):
            continue
        TT, RS, SS = TT.get(), RS.get(), SS.get()
        for g, idx in groups.items():
            rs = RS[np.ix_(idx, idx)]
            s = out.setdefault(g, {})
            name = metric.upper()
            s[f"1-NNA-{name}"] = one_nna(TT[np.ix_(idx, idx)], SS[np.ix_(idx, idx)], rs)
            s[f"COV-{name}"] = coverage(rs)
            s[f"MMD-{name}"] = mmd(rs)
    return out


# ---------------------------------------------------------------------------------------------
# Completion
# ---------------------------------------------------------------------------------------------

def one_sided_cd(partial: np.ndarray, clouds: np.ndarray, device: str) -> np.ndarray:
    """mean over the partial's points of the squared distance to the nearest point of each cloud."""
    dev = torch.device(device)
    a = torch.as_tensor(partial, dtype=torch.float64, device=dev)
    B = torch.as_tensor(clouds, dtype=torch.float64, device=dev)
    step = max(1, (1 << (30 if dev.type == "cuda" else 27)) // (8 * len(partial) * clouds.shape[1]))
    out = []
    for lo in range(0, len(B), step):
        b = B[lo:lo + step]
        d2 = torch.cdist(a.expand(len(b), -1, -1), b).square()
        out.append(d2.amin(dim=2).mean(dim=1).cpu().numpy())
    return np.concatenate(out)


def make_scans(data: dict, cfg, seed: int) -> list[dict]:
    from anydiff.points.metrics import cloud_stats
    rng = np.random.default_rng(1_000_000 + seed)
    scans = []
    for k, c in enumerate(cfg.classes):
        for i in range(min(cfg.complete_per_class, cfg.test_per_class)):
            full = data["X_test"][k * cfg.test_per_class + i].astype(np.float64)
            stats = cloud_stats([full], "box")[0]
            while True:
                n = rng.standard_normal(3)
                n /= np.linalg.norm(n)
                side = (full - stats[:3]) @ n > 0
                if 0 < side.sum() < len(full):
                    break
            scans.append({"cls": c, "full": full, "partial": full[side], "missing": full[~side],
                          "normal": n, "centre": stats[:3], "stats": stats})
    return scans


def _cd_units(a: np.ndarray, b: np.ndarray, stats: np.ndarray) -> float:
    from anydiff.points.metrics import chamfer_distance
    return float(chamfer_distance((a - stats[:3]) / stats[3], (b - stats[:3]) / stats[3]))


def completion_scores(scans: list[dict], completed: np.ndarray) -> dict:
    rows = []
    for s, comp in zip(scans, completed):
        m = len(s["partial"])
        rows.append({"cls": s["cls"], "cd_full": _cd_units(comp, s["full"], s["stats"]),
                     "cd_missing": _cd_units(comp[m:], s["missing"], s["stats"]),
                     "kept": float(np.abs(comp[:m] - s["partial"]).max())})
    return summarize_completion(rows)


def summarize_completion(rows: list[dict]) -> dict:
    out = {}
    for g in sorted({r["cls"] for r in rows}) + ["all"]:
        rs = [r for r in rows if g == "all" or r["cls"] == g]
        out[g] = {k: (max if k == "kept" else np.mean)([r[k] for r in rs]) for k in ("cd_full", "cd_missing", "kept")
                  if all(k in r for r in rs)}
    return out


def baseline_completions(scans: list[dict], X_train: np.ndarray, device: str) -> dict:
    out = {"partial scan only": [], "scan + mirror image": [], "nearest training cloud": []}
    train = X_train.astype(np.float64)
    for s in scans:
        p, n, c, st = s["partial"], s["normal"], s["centre"], s["stats"]
        out["partial scan only"].append({"cls": s["cls"], "cd_full": _cd_units(p, s["full"], st)})
        mirror = p - 2 * ((p - c) @ n)[:, None] * n[None]
        out["scan + mirror image"].append({"cls": s["cls"],
                                           "cd_full": _cd_units(np.concatenate([p, mirror]), s["full"], st),
                                           "cd_missing": _cd_units(mirror, s["missing"], st)})
        nearest = train[int(np.argmin(one_sided_cd(p, train, device)))]
        out["nearest training cloud"].append({"cls": s["cls"], "cd_full": _cd_units(nearest, s["full"], st)})
    return {k: summarize_completion(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# One seed
# ---------------------------------------------------------------------------------------------

def run_arch(arch: str, data: dict, scans: list[dict], cfg, seed: int) -> dict:
    from anydiff import PointCloudDiffusion
    gpu = cfg.device.startswith("cuda")
    steps = cfg.steps[arch]
    est = PointCloudDiffusion(architecture=arch, max_steps=steps, batch_size=cfg.batch_size, hidden=cfg.hidden,
                              depth=cfg.depth, train_points=cfg.points, sampling_steps=cfg.sampling_steps,
                              device=cfg.device, random_state=seed)
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    sync(cfg.device)
    t0 = time.perf_counter()
    est.fit(data["X_train"], data["y_train"])
    sync(cfg.device)
    fit_s = time.perf_counter() - t0
    n = len(data["y_test"])
    t0 = time.perf_counter()
    samples = est.sample(n, n_points=cfg.points, y=data["y_test"], random_state=seed, chunk_size=cfg.chunk_size)
    sample_s = time.perf_counter() - t0
    if not np.isfinite(samples).all():
        raise RuntimeError(f"{arch}: non-finite samples")
    t0 = time.perf_counter()
    completed = est.complete([s["partial"] for s in scans], n_points=cfg.points, resample=cfg.repaint_resample,
                             steps=cfg.repaint_steps, random_state=seed)
    complete_s = time.perf_counter() - t0
    batch = min(cfg.batch_size, len(data["X_train"]))
    return {"samples": samples, "fit_s": fit_s, "sample_s": sample_s, "complete_s": complete_s,
            "steps": steps, "batch": batch, "steps_per_s": steps / fit_s, "clouds_per_s": steps * batch / fit_s,
            "samples_per_s": n / sample_s, "params": sum(p.numel() for p in est.model_.parameters()),
            "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if gpu else math.nan,
            "completion": completion_scores(scans, completed),
            "final_loss": float(est.loss_curve_[-1])}


def run_seed(seed: int, cfg, results: list[dict]) -> None:
    """Appends the seed's record to ``results`` at once and fills it in as the parts finish, so an
    interrupted run still reports the finished architectures."""
    t0 = time.perf_counter()
    data = make_data(cfg, seed)
    scans = make_scans(data, cfg, seed)
    n = cfg.test_per_class
    res = {"seed": seed, "arch": {}, "baselines": baseline_completions(scans, data["X_train"], cfg.device),
           "groups": {**{c: np.arange(k * n, (k + 1) * n) for k, c in enumerate(cfg.classes)},
                      "all": np.arange(len(cfg.classes) * n)}}
    t1 = time.perf_counter()
    res["dist"] = test_distances(data["X_test"], cfg, seed)
    add_method(res["dist"], "floor", data["floor"], cfg, seed)
    dist_s = time.perf_counter() - t1
    results.append(res)
    for arch in cfg.archs:
        r = run_arch(arch, data, scans, cfg, seed)
        t1 = time.perf_counter()
        add_method(res["dist"], arch, r.pop("samples"), cfg, seed)
        dist_s += time.perf_counter() - t1
        res["arch"][arch] = r
        print(f"  seed {seed} {arch:11s} fit {r['fit_s']:7.1f} s ({r['steps_per_s']:.2f} steps/s, "
              f"{r['clouds_per_s']:.1f} clouds/s)  sample {r['sample_s']:6.1f} s  complete {r['complete_s']:6.1f} s  "
              f"final loss {r['final_loss']:.4f}", flush=True)
        if cfg.progress and (seed < cfg.seeds - 1 or arch != cfg.archs[-1]):
            report(results, cfg, final=False)
    res["seconds"] = time.perf_counter() - t0
    print(f"  seed {seed}: distances {dist_s:.1f} s{' (EMD queued to the pool)' if _POOL is not None else ''}; "
          f"seed total {res['seconds']:.1f} s", flush=True)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def ms(vals, scale: float = 1.0, digits: int = 1) -> str:
    vals = [v * scale for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "--"
    sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return f"{np.mean(vals):.{digits}f} +- {sd:.{digits}f}"


COLUMNS = [("1-NNA-CD", 100, 1), ("1-NNA-EMD", 100, 1), ("COV-CD", 100, 1), ("COV-EMD", 100, 1),
           ("MMD-CD", 1e3, 3), ("MMD-EMD", 1e2, 3)]


def collect_scores(results: list[dict], methods: list[str], wait: bool) -> dict:
    """scores[norm][method][group][metric] = list over seeds."""
    out = {}
    for r in results:
        for norm in NORMS:
            for m in methods:
                if m != "floor" and m not in r["arch"]:
                    continue
                s = set_scores(r["dist"][norm], m, r["groups"], wait)
                for g, vals in s.items():
                    for k, v in vals.items():
                        out.setdefault(norm, {}).setdefault(m, {}).setdefault(g, {}).setdefault(k, []).append(v)
    return out


def report(results: list[dict], cfg, *, final: bool, note: str = "") -> None:
    if not results:
        print("\nNo seed finished: nothing to report.\n", flush=True)
        return
    methods = ["floor"] + [a for a in cfg.archs if any(a in r["arch"] for r in results)]
    scores = collect_scores(results, methods, wait=final)
    groups = list(cfg.classes) + ["all"]
    label = {"floor": "floor (training set)"}
    print(f"\n## {'Results' if final else 'Progress'}: seeds {', '.join(str(r['seed']) for r in results)}{note}\n",
          flush=True)
    for norm in NORMS:
        rows = []
        for g in groups:
            for m in methods:
                s = scores.get(norm, {}).get(m, {}).get(g, {})
                n = f"{len(s.get('1-NNA-CD', []))} / {len(s.get('1-NNA-EMD', []))}"
                rows.append([g, label.get(m, m), n] + [ms(s.get(k, []), sc, d) for k, sc, d in COLUMNS])
        print(table(f"Generation, {norm} normalization ({cfg.points} points, EMD on {min(cfg.emd_points, cfg.points)} "
                    f"of them; reference = {cfg.test_per_class} test clouds per class, as many samples; "
                    f"mean +- sd over the seeds, n = seeds with CD / EMD scores): 1-NNA, COV in %, "
                    "MMD-CD x 10^3, MMD-EMD x 10^2",
                    ["class", "method", "n"] + [k for k, _, _ in COLUMNS], rows), flush=True)
    rows = []
    for a in methods[1:]:
        rs = [r["arch"][a] for r in results if a in r["arch"]]
        g = lambda k: [x[k] for x in rs]  # noqa: E731
        rows.append([a, f"{rs[0]['params'] / 1e6:.2f} M", str(rs[0]["steps"]), str(rs[0]["batch"]),
                     ms(g("fit_s")), ms(g("steps_per_s"), digits=2), ms(g("clouds_per_s")), ms(g("sample_s")),
                     ms(g("samples_per_s"), digits=2), ms(g("complete_s")), ms(g("peak_gb"), digits=2)])
    print(table(f"Training and sampling ({cfg.device}; steps/s = steps / fit seconds, for latent one encoder-decoder "
                f"step plus one prior step per step; clouds/s = steps x batch / fit seconds; sampling "
                f"{cfg.sampling_steps} steps of the default sampler, {len(cfg.classes) * cfg.test_per_class} clouds of "
                f"{cfg.points} points)",
                ["architecture", "parameters", "steps", "batch", "fit s", "steps/s", "train clouds/s", "sample s",
                 "sampled clouds/s", "complete s", "peak GPU GiB"], rows), flush=True)
    rows = []
    comp = {a: [r["arch"][a]["completion"] for r in results if a in r["arch"]] for a in methods[1:]}
    comp.update({b: [r["baselines"][b] for r in results] for b in results[0]["baselines"]})
    for name, per_seed in comp.items():
        row = [name] + [ms([p[g]["cd_full"] for p in per_seed], 1e3, 2) for g in groups]
        row.append(ms([p["all"]["cd_missing"] for p in per_seed if "cd_missing" in p["all"]], 1e3, 2))
        kept = [p["all"]["kept"] for p in per_seed if "kept" in p["all"]]
        row.append("--" if not kept else ("yes (exactly)" if max(kept) == 0 else f"NO: max deviation {max(kept):.2e}"))
        rows.append(row)
    print(table(f"Completion ({min(cfg.complete_per_class, cfg.test_per_class)} test clouds per class, the half on one "
                f"side of a random plane through the box centre observed; completed to {cfg.points} points; RePaint "
                f"{cfg.repaint_steps} steps x {cfg.repaint_resample} resamples for the transformer, "
                f"{cfg.repaint_steps} sampler steps for latent): CD x 10^3 in the full cloud's box units, "
                "mean +- sd over seeds",
                ["method"] + [f"CD to full: {g}" for g in groups] + ["CD generated to missing half: all",
                                                                      "observed points kept"], rows), flush=True)
    print("**Summary** (mean over classes of the per-class 1-NNA-CD; target <= 55 %; papers: " + PAPERS + ")\n")
    for norm in NORMS:
        for m in methods:
            per = [np.mean(scores[norm][m][c]["1-NNA-CD"]) for c in cfg.classes
                   if "1-NNA-CD" in scores.get(norm, {}).get(m, {}).get(c, {})]
            if not per:
                continue
            v = float(np.mean(per))
            verdict = "" if m == "floor" else (" PASS" if v <= TARGET else " FAIL")
            print(f"- {norm:6s} {label.get(m, m):21s}: 1-NNA-CD {100 * v:5.1f} %{verdict}"
                  f" (all classes pooled: {100 * np.mean(scores[norm][m]['all']['1-NNA-CD']):.1f} %)")
    print(flush=True)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def parse_steps(text: str, archs) -> dict[str, int]:
    if text.strip().isdigit():
        return {a: int(text) for a in archs}
    out = dict(item.split("=") for item in text.split(","))
    return {a: int(out[a]) for a in archs}


def main() -> None:
    global _POOL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=("cpu", "papers"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="smoke run (tiny sizes), under a minute")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--points", type=int, help="points per cloud, training and evaluation")
    parser.add_argument("--classes", help='comma-separated ProcShapes classes, or "all"')
    parser.add_argument("--train-per-class", type=int)
    parser.add_argument("--test-per-class", type=int, help="test clouds per class (= samples per class)")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1")
    parser.add_argument("--architectures", default=",".join(ARCHS))
    parser.add_argument("--max-steps", help='training steps: "N" for both or "transformer=N,latent=M"')
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--hidden", type=int)
    parser.add_argument("--depth", type=int)
    parser.add_argument("--sampling-steps", type=int)
    parser.add_argument("--emd-points", type=int, help="points per cloud for the exact EMD (random subsample)")
    parser.add_argument("--complete-per-class", type=int)
    parser.add_argument("--repaint-steps", type=int)
    parser.add_argument("--repaint-resample", type=int)
    parser.add_argument("--chunk-size", type=int, help="clouds sampled at once")
    parser.add_argument("--workers", type=int, help="processes for the EMD (-1: all cores but one)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--time-budget", type=float, help="seconds; no new seed starts past it (0: none)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="print the tables after every seed")
    cfg = parser.parse_args()
    base = PROTOCOLS["quick" if cfg.quick else cfg.protocol]
    for k, v in base.items():
        if getattr(cfg, k, None) is None:
            setattr(cfg, k, v)
    from anydiff.points import SHAPE_CLASSES
    cfg.classes = list(SHAPE_CLASSES) if cfg.classes == "all" else [c.strip() for c in cfg.classes.split(",")]
    cfg.archs = [a.strip() for a in cfg.architectures.split(",") if a.strip()]
    bad = [a for a in cfg.archs if a not in ARCHS]
    if bad:
        parser.error(f"unknown architectures {bad}; choose among {list(ARCHS)}")
    cfg.steps = parse_steps(cfg.max_steps, cfg.archs)
    if cfg.workers == -1:  # the cores this process may use (not the host's), at most 32
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
        cfg.workers = max(1, min(cores - 2, 32))
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    torch.set_num_threads(cfg.threads)

    import anydiff
    import scipy
    print(f"# anydiff point-cloud benchmark ({'--quick smoke run' if cfg.quick else cfg.protocol + ' protocol'})\n")
    print(f"anydiff {anydiff.__version__} (git {git_revision()}), torch {torch.__version__}, numpy {np.__version__}, "
          f"scipy {scipy.__version__}, Python {platform.python_version()}")
    gpu = (f", GPU {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})" if cfg.device.startswith("cuda") else "")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores (load average {load[0]:.1f} at start){gpu}; "
          f"device {cfg.device}; torch threads {cfg.threads}; EMD processes {cfg.workers}")
    print(f"data: ProcShapes (make_shapes, upright, anisotropy 0.2), classes {', '.join(cfg.classes)}; "
          f"{cfg.train_per_class} training and {cfg.test_per_class} test clouds per class, {cfg.points} points each "
          f"(training and evaluation), drawn afresh per seed; seeds 0..{cfg.seeds - 1}")
    print(f"models: PointCloudDiffusion(architecture=..., hidden={cfg.hidden}, depth={cfg.depth}, batch_size="
          f"{cfg.batch_size}, max_steps={cfg.steps}, sampling_steps={cfg.sampling_steps}, train_points={cfg.points}), "
          "other settings default (normalize='box', v-prediction, cosine schedule, SDE-DPM-Solver++(2M)); "
          "class-conditional (fit with the labels), sampled with each class's label, no guidance")
    print(f"metrics: reference = test set (rows); CD on all {cfg.points} points; exact EMD (linear assignment) on a "
          f"random subsample of {min(cfg.emd_points, cfg.points)} points per cloud; floor = the first "
          f"{cfg.test_per_class} training clouds of each class against the same test set\n", flush=True)

    if cfg.workers > 1:
        _POOL = mp.get_context("spawn").Pool(cfg.workers)
    signal.signal(signal.SIGTERM, _on_signal)
    start = time.perf_counter()
    results, note = [], ""
    try:
        for seed in range(cfg.seeds):
            if cfg.time_budget and results:
                elapsed = time.perf_counter() - start
                longest = max(r["seconds"] for r in results if "seconds" in r)
                if elapsed + 1.1 * longest > cfg.time_budget:
                    note = (f" (seeds {seed}..{cfg.seeds - 1} skipped: {elapsed:.0f} s spent, a seed takes up to "
                            f"{longest:.0f} s, time budget {cfg.time_budget:.0f} s)")
                    print(f"\n{note.strip()}", flush=True)
                    break
            run_seed(seed, cfg, results)
    except (Interrupted, KeyboardInterrupt) as err:
        note = (f" (interrupted by {err or 'SIGINT'} during seed {len(results) - 1}; the tables hold what "
                "had finished: see n)")
        print(f"\n{note.strip()}", flush=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        report(results, cfg, final=False, note=note)  # EMD only where already computed
        if _POOL is not None:
            _POOL.terminate()
        print(f"Total wall time: {time.perf_counter() - start:.1f} s", flush=True)
        sys.exit(1)
    try:
        report(results, cfg, final=True, note=note)
    except (Interrupted, KeyboardInterrupt) as err:  # while waiting for the EMD pool
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        report(results, cfg, final=False, note=f"{note} (interrupted by {err or 'SIGINT'} while the EMD was "
                                                 "still computing: EMD columns over the seeds done)")
    if _POOL is not None:
        _POOL.terminate()
    print(f"Total wall time: {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
