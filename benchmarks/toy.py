"""Toy 2-D benchmark: VectorDiffusion against a BIC-selected Gaussian mixture and a
cross-validated kernel density estimate, on every toy set of :mod:`anydiff.datasets`.

For each set it draws a training set, a held-out test set and a reference set (independent
seeds), fits the three models (timed), draws samples from each and reports

* C2ST ROC-AUC against the reference set (``anydiff.metrics.c2st``; 0.5 is best),
* sliced Wasserstein-2 to the reference set (``anydiff.metrics.sliced_wasserstein``, fixed
  projections), both with the noise floor of two independent data sets of the same size (mean and
  sd over 5 fresh sets),
* held-out log-likelihood per point (nats, mean of ``score_samples`` on the same test points;
  VectorDiffusion's runs the probability-flow ODE and is timed),

then prints one Markdown table per metric and a PASS/FAIL summary of the targets: VectorDiffusion
beats both baselines on C2ST and on SW2, and beats the KDE on held-out likelihood, on every set.

    PYTHONPATH=. python benchmarks/toy.py                  # full run (about 15-25 min on 2 cores)
    PYTHONPATH=. python benchmarks/toy.py --quick          # smoke run, a few seconds per set
    PYTHONPATH=. python benchmarks/toy.py --sets moons,checkerboard --max-steps 5000
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KernelDensity
from threadpoolctl import threadpool_limits

import anydiff
from anydiff.datasets import TOY_DATASETS, checkerboard_log_prob, eight_gaussians_mixture, load_toy
from anydiff.metrics import c2st, sliced_wasserstein

MODELS = ("VectorDiffusion", "GMM", "KDE")
ROLES = {"train": 1, "test": 2, "reference": 3, "floor": 4}  # one independent seed per role


def data_seed(seed: int, set_index: int, role: str, repeat: int = 0) -> int:
    """An independent seed for (run seed, data set, role, repeat), from numpy's SeedSequence."""
    return int(np.random.SeedSequence([seed, set_index, ROLES[role], repeat]).generate_state(1)[0])


def true_log_likelihood(name: str, X: np.ndarray) -> float | None:
    """Mean exact log-density of X where the toy set's density is known in closed form."""
    if name == "eight_gaussians":
        return float(eight_gaussians_mixture().log_prob(torch.from_numpy(X)).mean())
    if name == "checkerboard":
        return float(np.mean(checkerboard_log_prob(X)))
    return None


def git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "unknown") + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# -- models -----------------------------------------------------------------------------------
def fit_diffusion(X, cfg, seed):
    est = anydiff.VectorDiffusion(max_steps=cfg.max_steps, batch_size=cfg.batch_size,
                                  learning_rate=cfg.learning_rate, hidden=cfg.hidden, depth=cfg.depth,
                                  sampling_steps=cfg.sampling_steps, device="cpu", random_state=seed)
    return est.fit(X), {}


def fit_gmm(X, cfg, seed):
    """Full-covariance mixtures with 1..max_components components; the lowest BIC wins."""
    best, best_bic, bics = None, np.inf, []
    for k in range(1, cfg.max_components + 1):
        gmm = GaussianMixture(n_components=k, covariance_type="full", random_state=seed).fit(X)
        bic = gmm.bic(X)
        bics.append(bic)
        if bic < best_bic:
            best, best_bic = gmm, bic
    return best, {"n_components": best.n_components}


def fit_kde(X, cfg, seed):
    """Gaussian KDE, bandwidth by 5-fold GridSearchCV (held-out log-likelihood) over a log grid."""
    grid = np.logspace(np.log10(cfg.bw_min), np.log10(cfg.bw_max), cfg.bw_points)
    search = GridSearchCV(KernelDensity(kernel="gaussian"), {"bandwidth": grid},
                          cv=KFold(5, shuffle=True, random_state=seed)).fit(X)
    bw = float(search.best_params_["bandwidth"])
    edge = bw in (grid[0], grid[-1])
    return search.best_estimator_, {"bandwidth": bw, "bandwidth_at_grid_edge": edge}


def draw(name, model, n, seed):
    if name == "VectorDiffusion":
        return model.sample(n, random_state=seed)
    if name == "GMM":
        return model.sample(n)[0]  # uses the mixture's random_state
    return model.sample(n, random_state=seed)


# -- one data set -----------------------------------------------------------------------------
def run_set(name: str, set_index: int, cfg) -> dict:
    seed = cfg.seed
    X_train = load_toy(name, cfg.n_train, random_state=data_seed(seed, set_index, "train"))
    X_test = load_toy(name, cfg.n_test, random_state=data_seed(seed, set_index, "test"))
    X_ref = load_toy(name, cfg.n_ref, random_state=data_seed(seed, set_index, "reference"))
    X_ll = X_test[:cfg.n_ll]

    def sw2(Y):  # the same projections for every call
        return sliced_wasserstein(X_ref, Y, n_projections=256, generator=torch.Generator().manual_seed(seed))

    def auc(Y):
        with threadpool_limits(1):
            return c2st(X_ref, Y, random_state=seed)

    res = {"fit_s": {}, "sample_s": {}, "ll_s": {}, "c2st": {}, "sw2": {}, "ll": {}, "info": {}}
    # noise floor: the reference set against fresh data sets of the sample size (mean, std over repeats)
    floors = [load_toy(name, cfg.n_samples, random_state=data_seed(seed, set_index, "floor", r))
              for r in range(cfg.floor_repeats)]
    for key, fn in (("c2st", auc), ("sw2", sw2)):
        vals = [fn(F) for F in floors]
        res[key]["floor"], res[key]["floor_sd"] = float(np.mean(vals)), float(np.std(vals, ddof=1))
    res["ll"]["truth"] = true_log_likelihood(name, X_ll)
    fitters = {"VectorDiffusion": fit_diffusion, "GMM": fit_gmm, "KDE": fit_kde}
    for m in MODELS:
        t0 = time.perf_counter()
        if m == "VectorDiffusion":
            model, info = fitters[m](X_train, cfg, seed)
        else:
            with threadpool_limits(1):
                model, info = fitters[m](X_train, cfg, seed)
        res["fit_s"][m] = time.perf_counter() - t0
        res["info"][m] = info
        t0 = time.perf_counter()
        Y = draw(m, model, cfg.n_samples, seed + 1)
        res["sample_s"][m] = time.perf_counter() - t0
        if not np.isfinite(Y).all():
            raise RuntimeError(f"{name}: {m} produced non-finite samples")
        res["c2st"][m], res["sw2"][m] = auc(Y), sw2(Y)
        t0 = time.perf_counter()
        with threadpool_limits(1):
            res["ll"][m] = float(np.mean(model.score_samples(X_ll)))
        res["ll_s"][m] = time.perf_counter() - t0
        print(f"  {name:16s} {m:16s} fit {res['fit_s'][m]:7.1f} s  sample {res['sample_s'][m]:5.1f} s  "
              f"C2ST {res['c2st'][m]:.4f}  SW2 {res['sw2'][m]:.4f}  LL {res['ll'][m]:+.4f} "
              f"({res['ll_s'][m]:.1f} s)  {info}", flush=True)
    return res


# -- report -----------------------------------------------------------------------------------
def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def bold_best(values: dict, better: str) -> dict:
    """Format the model values, the best one in bold ("lower" or "higher" is better)."""
    pick = min if better == "lower" else max
    best = pick(values[m] for m in MODELS)
    return {m: (f"**{values[m]:.4f}**" if values[m] == best else f"{values[m]:.4f}") for m in MODELS}


def floor_text(r: dict) -> str:
    return f"{r['floor']:.4f} +- {r['floor_sd']:.4f}"


def report(results: dict, cfg) -> bool:
    names = list(results)
    rows = []
    for n in names:
        f = bold_best(results[n]["c2st"], "lower")
        rows.append([n] + [f[m] for m in MODELS] + [floor_text(results[n]["c2st"])])
    print(table(f"C2ST ROC-AUC against {cfg.n_ref} reference points ({cfg.n_samples} samples; 0.5 is best, "
                "lower is better)", ["data set", *MODELS, f"noise floor (fresh data, mean +- sd of {cfg.floor_repeats})"], rows))
    rows = []
    for n in names:
        f = bold_best(results[n]["sw2"], "lower")
        rows.append([n] + [f[m] for m in MODELS] + [floor_text(results[n]["sw2"])])
    print(table("Sliced Wasserstein-2 to the reference set (256 fixed projections; lower is better)",
                ["data set", *MODELS, f"noise floor (fresh data, mean +- sd of {cfg.floor_repeats})"], rows))
    rows = []
    for n in names:
        f = bold_best(results[n]["ll"], "higher")
        truth = results[n]["ll"]["truth"]
        rows.append([n] + [f[m] for m in MODELS] + ["--" if truth is None else f"{truth:.4f}"])
    print(table(f"Held-out log-likelihood, nats per point (mean over {cfg.n_ll} test points; higher is better)",
                ["data set", *MODELS, "true density"], rows))
    rows = []
    for n in names:
        r = results[n]
        rows.append([n, f"{r['fit_s']['VectorDiffusion']:.1f}", f"{r['sample_s']['VectorDiffusion']:.1f}",
                     f"{r['ll_s']['VectorDiffusion']:.1f}",
                     f"{r['fit_s']['GMM']:.1f} (k={r['info']['GMM']['n_components']})",
                     f"{r['fit_s']['KDE']:.1f} (h={r['info']['KDE']['bandwidth']:.3f}"
                     + (", grid edge!" if r["info"]["KDE"]["bandwidth_at_grid_edge"] else "") + ")"])
    print(table("Wall time, seconds (GMM: BIC selection included; KDE: 5-fold bandwidth search included)",
                ["data set", "VectorDiffusion fit", f"VD sample {cfg.n_samples}", f"VD log-lik {cfg.n_ll}",
                 "GMM fit (chosen k)", "KDE fit (chosen bandwidth)"], rows))

    print("**Targets** (VectorDiffusion: lower C2ST and lower SW2 than GMM and KDE; higher held-out "
          "log-likelihood than KDE)\n")
    all_pass, fails = True, []
    for n in names:
        r, vd = results[n], "VectorDiffusion"
        checks = []  # (label, passed, VD value, baseline value, noise sd of the metric or None)
        for metric, label in (("c2st", "C2ST"), ("sw2", "SW2")):
            for base in ("GMM", "KDE"):
                checks.append((f"{label} < {base}", r[metric][vd] < r[metric][base], r[metric][vd],
                               r[metric][base], r[metric]["floor_sd"]))
        checks.append(("LL > KDE", r["ll"][vd] > r["ll"]["KDE"], r["ll"][vd], r["ll"]["KDE"], None))
        failed = []
        for label, ok, v, b, sd in checks:
            if not ok:
                gap = abs(v - b)
                noise = f", {gap / sd:.1f} floor sd" if sd else ""
                failed.append(f"{label}: {v:.4f} vs {b:.4f} (gap {gap:.4f}{noise})")
        all_pass &= not failed
        fails += [f"{n} {f.split(':')[0]}" for f in failed]
        print(f"- {n}: " + ("PASS (5/5)" if not failed else f"FAIL ({5 - len(failed)}/5 pass) - " + "; ".join(failed)))
    print()
    print("OVERALL: " + ("PASS, every target met on every set" if all_pass
                         else f"FAIL, {len(fails)} of {5 * len(names)} checks failed: " + ", ".join(fails)))
    print("(A gap of about 1-2 floor sd is within the spread of one draw of the metric at this sample size.)")
    return all_pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run with tiny settings (seconds per set)")
    parser.add_argument("--sets", default=",".join(TOY_DATASETS),
                        help=f"comma-separated toy sets (default: all of {', '.join(TOY_DATASETS)})")
    parser.add_argument("--n-train", type=int, default=None, help="training points (default 5000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="VectorDiffusion training steps (default 3000)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--hidden", type=int, default=None, help="MLP width (default 128)")
    parser.add_argument("--depth", type=int, default=None, help="residual blocks (default 3)")
    parser.add_argument("--sampling-steps", type=int, default=50)
    parser.add_argument("--n-ll", type=int, default=None, help="test points for the log-likelihood (default 1000)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (default 1: on a shared 2-core machine two threads "
                             "were up to 20x slower)")
    cfg = parser.parse_args()
    sets = [s.strip() for s in cfg.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in TOY_DATASETS]
    if unknown:
        parser.error(f"unknown sets {unknown}; choose from {list(TOY_DATASETS)}")
    quick = cfg.quick
    defaults = dict(n_train=(1000, 5000), max_steps=(150, 3000), hidden=(64, 128), depth=(2, 3), n_ll=(50, 1000))
    for key, (q, full) in defaults.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, q if quick else full)
    cfg.n_test, cfg.n_ref, cfg.n_samples = (500, 1000, 1000) if quick else (2000, 5000, 5000)
    cfg.n_ll = min(cfg.n_ll, cfg.n_test)
    cfg.max_components = 5 if quick else 20
    cfg.floor_repeats = 2 if quick else 5
    cfg.bw_min, cfg.bw_max, cfg.bw_points = (0.02, 1.0, 6) if quick else (0.01, 1.0, 21)
    if quick:
        cfg.sampling_steps = min(cfg.sampling_steps, 20)
    torch.set_num_threads(cfg.threads)

    start = time.perf_counter()
    print(f"# anydiff toy benchmark{' (--quick smoke run)' if quick else ''}\n")
    print(f"anydiff {anydiff.__version__} (git {git_revision()}), torch {torch.__version__}, "
          f"scikit-learn {sklearn.__version__}, numpy {np.__version__}, Python {platform.python_version()}, "
          f"{platform.machine()}")
    print(f"torch threads: {torch.get_num_threads()} (set with torch.set_num_threads({cfg.threads})); "
          f"CPU cores: {torch.multiprocessing.cpu_count()}; scikit-learn (C2ST, GMM, KDE) under "
          "threadpool_limits(1)")
    print(f"data: n_train={cfg.n_train}, n_test={cfg.n_test} (log-likelihood on the first {cfg.n_ll}), "
          f"n_reference={cfg.n_ref}, samples per model={cfg.n_samples}, seed={cfg.seed}; default noise of each set")
    print(f"VectorDiffusion: ResidualMLP hidden={cfg.hidden} depth={cfg.depth}, max_steps={cfg.max_steps}, "
          f"batch_size={cfg.batch_size}, learning_rate={cfg.learning_rate:g} (warm-up + cosine decay), "
          f"prediction=v, cosine schedule, EMA 0.999, sampler dpmpp_2m with {cfg.sampling_steps} steps "
          f"(trailing grid), random_state={cfg.seed}, device=cpu")
    print(f"GMM: full covariances, n_components in 1..{cfg.max_components} by BIC, random_state={cfg.seed}")
    print(f"KDE: Gaussian kernel, bandwidth by 5-fold GridSearchCV over {cfg.bw_points} log-spaced values "
          f"in [{cfg.bw_min:g}, {cfg.bw_max:g}]")
    print(f"metrics: C2ST = anydiff.metrics.c2st (HistGradientBoosting, 5 folds, random_state={cfg.seed}); "
          f"SW2 = anydiff.metrics.sliced_wasserstein (256 projections, generator seed {cfg.seed}); the noise "
          f"floor compares the reference set with {cfg.floor_repeats} fresh data sets of the sample size "
          "(mean +- sd)\n", flush=True)

    results = {}
    all_names = list(TOY_DATASETS)
    for name in sets:
        t0 = time.perf_counter()
        results[name] = run_set(name, all_names.index(name), cfg)
        print(f"  {name}: {time.perf_counter() - t0:.1f} s\n", flush=True)
    ok = report(results, cfg)
    print(f"\nTotal wall time: {time.perf_counter() - start:.1f} s")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
