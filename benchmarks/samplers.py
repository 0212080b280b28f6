"""Sampler and likelihood benchmark on exact Gaussian-mixture denoisers.

Every sampler of ``anydiff.sampling.SAMPLERS`` draws from the exact (Bayes-optimal) denoiser of a
known Gaussian mixture, ``gm.model(schedule, prediction="eps")``, so every error in the tables is
the sampler's discretisation error plus sampling noise -- no training error. Two problems:

* ``ring-2d``: the eight-Gaussian ring, 8 equal-weight isotropic components (std 0.1) on a circle
  of radius 2;
* ``mixture-16d``: D = 16, K = 5 components with random full covariances and unequal weights,
  built from a fixed seed.

For model-evaluation budgets of 5, 10, 20, 50 and 1000 each sampler gets the largest number of
steps whose ``anydiff.sampling.model_evaluations`` fits the budget (``langevin`` and ``pc`` with one
corrector step); a counting wrapper around the model checks the actual number of calls. The
tables report the sliced Wasserstein-2 distance to fresh data of the same size, the mode-weight
error (total variation between mean responsibilities and the mixture weights) and wall time.
The likelihood table compares ``anydiff.log_likelihood`` with the exact ``gm.log_prob``.

With ``--grids optimized`` (the default) the multistep solvers (dpmpp_2m, dpmpp_3m, unipc,
dpmpp_2m_sde) also run on ``timesteps="optimized"``: the grid of
``anydiff.timesteps.optimize_grid`` computed once per problem from the oracle's own denoiser (256
noise draws, 100 fine steps), for each solver's order; ``--grids none`` leaves those rows out.

Run ``PYTHONPATH=. python benchmarks/samplers.py`` (about 4-6 minutes on 2 CPU cores) or with
``--quick`` for a smoke run of about half a minute.
"""
from __future__ import annotations

import argparse
import inspect
import math
import platform
import subprocess
import time
from dataclasses import dataclass

import torch

import anydiff as ad
import anydiff.metrics as metrics
from anydiff.sampling import SAMPLERS, model_evaluations
from anydiff.timesteps import optimize_grid, solver_order

BUDGETS = (5, 10, 20, 50, 1000)
GAP_TOL = {"ring-2d": 0.05, "mixture-16d": 0.15}  # issue #14: E[log p] gap at 10 evaluations vs DDPM @1000
CORRECTOR_STEPS = 1
# time grid per sampler (default "trailing"); the multistep ODE solvers are run on two grids
GRIDS = {"dpmpp_2m": ("trailing", "logsnr"), "dpmpp_3m": ("trailing", "logsnr"), "unipc": ("trailing", "logsnr"),
         "euler": ("karras",), "heun": ("karras",)}
# with --grids optimized these also run on the grid optimized for the problem's denoiser
OPTIMIZED_ROWS = ("dpmpp_2m", "dpmpp_3m", "unipc", "dpmpp_2m_sde")
DASH = "\u2014"


# ------------------------------------------------------------------------------------------------
# problems
# ------------------------------------------------------------------------------------------------

@dataclass
class Problem:
    name: str
    description: str
    gm: ad.oracles.GaussianMixture
    n: int        # samples per cell
    n_long: int   # samples per cell of the 1000-evaluation column
    grids: dict | None = None  # {order: GridDensity} of timesteps="optimized" (None: not computed)


def ring_2d() -> ad.oracles.GaussianMixture:
    """Eight equal Gaussians of std 0.1 on a circle of radius 2."""
    return ad.datasets.eight_gaussians_mixture(noise=0.1)


def mixture_16d() -> ad.oracles.GaussianMixture:
    """D = 16, K = 5 unequal weights, random full covariances with eigenvalues log-uniform in
    [0.01, 0.25]: :func:`anydiff.oracles.random_mixture` at its defaults."""
    return ad.oracles.random_mixture()


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

class CountingModel:
    """Wraps a model callable and counts its calls."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x_t, t, cond=None):
        self.calls += 1
        return self.model(x_t, t, cond)


def timesteps_arg(sampler: str, steps: int, schedule, grid: str, grids: dict | None):
    """What ``ad.sample`` takes as ``timesteps``: the spacing's name, or for "optimized" the
    problem's own grid of ``steps`` steps for the sampler's order."""
    if grid != "optimized":
        return grid
    return grids[solver_order(sampler)].timesteps(schedule, steps)


def evaluations(sampler: str, steps: int, schedule, grid: str, grids: dict | None = None) -> int:
    """``anydiff.sampling.model_evaluations`` for these settings (it takes the schedule and the
    grid when the count depends on them, as for Heun, whose steps from sigma~ > 80 are Euler)."""
    if "schedule" in inspect.signature(model_evaluations).parameters:
        return model_evaluations(sampler, steps, schedule=schedule,
                                 timesteps=timesteps_arg(sampler, steps, schedule, grid, grids),
                                 corrector_steps=CORRECTOR_STEPS)
    return model_evaluations(sampler, steps, CORRECTOR_STEPS)


def steps_for_budget(sampler: str, budget: int, schedule, grid: str, grids: dict | None = None) -> int | None:
    """The largest number of steps whose model evaluations do not exceed the budget (every step
    makes at least one model call, so no more than ``budget`` steps can fit)."""
    for steps in range(budget, 0, -1):
        if evaluations(sampler, steps, schedule, grid, grids) <= budget:
            return steps
    return None


EXTRA_GRIDS: tuple[str, ...] = ()  # set from --grids


def rows() -> list[tuple[str, str]]:
    return [(name, grid) for name in SAMPLERS
            for grid in GRIDS.get(name, ("trailing",)) + (EXTRA_GRIDS if name in OPTIMIZED_ROWS else ())]


def git_state() -> str:
    """The commit of the checkout, with "+ uncommitted changes" when the tree is dirty."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not dirty:
        return commit
    # identify the uncommitted library sources the run imported
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256()
    for path in sorted(Path(ad.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return f"{commit} + uncommitted changes (anydiff sources sha256 {digest.hexdigest()[:12]})"


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sw2(x, y, seed: int, n_projections: int) -> float:
    # the same directions for every call (fixed seed), so cells are compared on equal terms
    return metrics.sliced_wasserstein(x, y, n_projections=n_projections, generator=gen(seed))


def num(v: float | None, digits: int = 4) -> str:
    return "diverged" if v is None else f"{v:.{digits}f}"


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


@dataclass
class Cell:
    steps: int
    expected: int
    calls: int
    seconds: float
    sw2: float | None       # None when the samples are not finite
    mode_error: float | None
    logp_gap: float | None  # E[log p(x)] of the samples under the true density minus the data's own


def run_cell(problem: Problem, schedule, sampler: str, grid: str, steps: int, n: int, reference,
             args, e_logp: float) -> Cell:
    model = CountingModel(problem.gm.model(schedule, prediction="eps"))
    start = time.perf_counter()
    x = ad.sample(model, (n, problem.gm.dim), schedule=schedule, sampler=sampler, steps=steps,
                  timesteps=timesteps_arg(sampler, steps, schedule, grid, problem.grids),
                  generator=gen(args.seed), corrector_steps=CORRECTOR_STEPS)
    seconds = time.perf_counter() - start
    finite = bool(torch.isfinite(x).all())
    return Cell(steps, evaluations(sampler, steps, schedule, grid, problem.grids), model.calls, seconds,
                sw2(x, reference, args.seed + 7, args.projections) if finite else None,
                metrics.mode_weight_error(x, problem.gm) if finite else None,
                float(problem.gm.log_prob(x.double()).mean()) - e_logp if finite else None)


def data_log_prob(problem: Problem, args, n: int = 200_000) -> float:
    """E[log p(x)] of the data under its own density, from n fresh points (standard error
    about 1e-3 nats here)."""
    return float(problem.gm.log_prob(problem.gm.sample(n, generator=gen(args.seed + 99)).double()).mean())


def noise_floor(problem: Problem, n: int, args, e_logp: float, repeats: int = 5) -> tuple[float, float, float, float]:
    """SW2 between pairs of independent fresh data sets of size n (mean, std over pairs), the
    mode-weight error of fresh data of size n (mean over sets) and the absolute E[log p] gap of
    fresh data of size n (mean over sets): what sampling noise alone gives."""
    base = args.seed + 1000 * n
    sws = torch.tensor([sw2(problem.gm.sample(n, generator=gen(base + 2 * r)),
                            problem.gm.sample(n, generator=gen(base + 2 * r + 1)),
                            args.seed + 7, args.projections) for r in range(repeats)])
    fresh = [problem.gm.sample(n, generator=gen(base + 2 * r)) for r in range(repeats)]
    mwe = sum(metrics.mode_weight_error(x, problem.gm) for x in fresh) / repeats
    gap = sum(abs(float(problem.gm.log_prob(x.double()).mean()) - e_logp) for x in fresh) / repeats
    return float(sws.mean()), float(sws.std()), mwe, gap


# ------------------------------------------------------------------------------------------------
# the sampler tables
# ------------------------------------------------------------------------------------------------

def sampler_tables(problem: Problem, schedule, args) -> dict:
    print(f"\n## {problem.name}: {problem.description}\n")
    if "optimized" in EXTRA_GRIDS:
        start = time.perf_counter()
        problem.grids = optimize_grid(problem.gm.model(schedule, prediction="eps"), schedule, prediction="eps",
                                      event_shape=(problem.gm.dim,), n_probe=256, n_fine=100, order=(1, 2, 3),
                                      generator=gen(args.seed + 11))
        print(f"Optimized grids (orders 1-3) from the exact denoiser: "
              f"{time.perf_counter() - start:.2f} s (256 draws, 100 fine steps).\n")
    sizes = sorted({problem.n, problem.n_long})
    references = {n: problem.gm.sample(n, generator=gen(args.seed + 1 + n)) for n in sizes}
    e_logp = data_log_prob(problem, args)
    floors = {n: noise_floor(problem, n, args, e_logp) for n in sizes}
    results: dict[tuple[str, str, int], Cell | None] = {}
    mismatches = []
    t_problem = time.perf_counter()
    for sampler, grid in rows():
        for budget in BUDGETS:
            steps = steps_for_budget(sampler, budget, schedule, grid, problem.grids)
            n = problem.n_long if budget == BUDGETS[-1] else problem.n
            cell = None if steps is None else run_cell(problem, schedule, sampler, grid, steps, n,
                                                       references[n], args, e_logp)
            results[(sampler, grid, budget)] = cell
            if cell is not None and cell.calls != cell.expected:
                mismatches.append(f"{sampler} ({grid}), {steps} steps: model_evaluations says "
                                  f"{cell.expected}, the model was called {cell.calls} times")
    elapsed = time.perf_counter() - t_problem

    def fmt(cell: Cell | None, budget: int, value: str) -> str:
        if cell is None:
            return DASH
        mark = "" if cell.calls == cell.expected else "!"
        return value if cell.calls == budget else f"{value} ({cell.calls}{mark})"

    header = ["sampler (grid)"] + [f"{b}" + (f" (n={problem.n_long})" if b == BUDGETS[-1] and problem.n_long != problem.n else "")
                                   for b in BUDGETS]

    def table(value_of) -> str:
        body = []
        for sampler, grid in rows():
            body.append([f"{sampler} ({grid})"] + [fmt(results[(sampler, grid, b)], b, value_of(results[(sampler, grid, b)]))
                                                   for b in BUDGETS])
        return markdown_table(header, body)

    print(f"Samples per cell: n = {problem.n}" + (f"; the 1000-evaluation column uses n = {problem.n_long} "
          "to keep the run short (its noise floor is larger, see below)" if problem.n_long != problem.n else "")
          + ". Column = model-evaluation budget; a cell with a number in parentheses used that many "
          "evaluations (the most that fit the budget); '!' marks a count that differs from "
          "`model_evaluations`; " + DASH + " = no step count fits.\n")
    print("Noise floor (sliced W2 between two independent fresh data sets of the same size, "
          "mean +- std over 5 pairs; mode-weight error and |E[log p] gap| of fresh data, mean over "
          f"5 sets; the data's own E[log p] = {e_logp:.4f} nats from 200,000 points):\n")
    print(markdown_table(["n", "SW2 noise floor", "mode-weight error of fresh data", "|E[log p] gap| of fresh data"],
                         [[str(n), f"{floors[n][0]:.4f} +- {floors[n][1]:.4f}", f"{floors[n][2]:.4f}",
                           f"{floors[n][3]:.4f}"] for n in sizes]))
    print(f"\n### Sliced Wasserstein-2 to fresh data ({args.projections} projections; lower is better)\n")
    print(table(lambda c: num(c.sw2) if c else ""))
    print("\n### Mode-weight error (TV between mean responsibilities and the weights; lower is better)\n")
    print(table(lambda c: num(c.mode_error) if c else ""))
    print("\n### E[log p] gap, nats (mean log-density of the samples under the true density minus the "
          "data's own; 0 best, negative: samples in low-density regions)\n")
    print(table(lambda c: f"{c.logp_gap:+.4f}" if c and c.logp_gap is not None else ""))
    print("\n### Wall time, seconds (steps in brackets)\n")
    print(table(lambda c: f"{c.seconds:.2f} [{c.steps}]" if c else ""))
    print(f"\n{problem.name}: sampler tables took {elapsed:.0f} s.")
    if mismatches:
        print("\nModel-call counts that differ from `model_evaluations`:\n")
        for line in mismatches:
            print(f"- {line}")
    return {"results": results, "floors": floors, "references": references, "e_logp": e_logp}


# ------------------------------------------------------------------------------------------------
# likelihood
# ------------------------------------------------------------------------------------------------

def likelihood_table(problems: list[Problem], schedule, args) -> dict:
    print(f"\n## Log-likelihood of {args.n_ll} fresh data points against the exact `gm.log_prob`\n")
    print("`ad.log_likelihood(gm.model(s), x, schedule=s, divergence=...)` with the default solver "
          "tolerances (rtol = atol = 1e-3, t_min = 1e-5), float64 data; errors in nats "
          "(estimate - exact), averaged over the points.\n")
    variants = [("exact", 1), ("hutchinson", 1), ("hutchinson", 10)]
    body, out = [], {}
    for problem in problems:
        x = problem.gm.sample(args.n_ll, generator=gen(args.seed + 99), dtype=torch.float64)
        exact = problem.gm.log_prob(x)
        for divergence, probes in variants:
            start = time.perf_counter()
            ll = ad.log_likelihood(problem.gm.model(schedule), x, schedule=schedule, divergence=divergence,
                                   n_probes=probes, generator=gen(args.seed + 5))
            seconds = time.perf_counter() - start
            err = ll - exact
            label = divergence if divergence == "exact" else f"hutchinson, n_probes={probes}"
            mae, signed = float(err.abs().mean()), float(err.mean())
            out[(problem.name, divergence, probes)] = (mae, signed)
            sem = float(err.std()) / math.sqrt(err.numel())
            body.append([problem.name, label, f"{mae:.4f}", f"{signed:+.4f} +- {sem:.4f}",
                         f"{float(err.std()):.4f}", f"{seconds:.1f}"])
    print(markdown_table(["problem", "divergence", "mean abs error", "mean signed error +- its std. error",
                          "std of error over points", "wall time, s"], body))
    print("\nk-diffusion's `log_likelihood` estimates the divergence with a single Hutchinson probe: "
          "the `hutchinson, n_probes=1` rows are the comparable peer figure. Hutchinson's estimate "
          "is unbiased (fixed Rademacher probes along each path), so its mean signed error should "
          "lie within a few standard errors of the exact row's; its mean absolute error is the "
          "per-point noise, falling as 1/sqrt(n_probes).")
    return out


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (about half a minute)")
    parser.add_argument("--n", type=int, default=None,
                        help="samples per cell (default 20000 for the 2-D ring, 10000 for the 16-D mixture; "
                             "with --n both use it)")
    parser.add_argument("--n-long", type=int, default=None,
                        help="samples per cell of the 1000-evaluation column (default n / 4)")
    parser.add_argument("--n-ll", type=int, default=None, help="data points of the likelihood table (default 200)")
    parser.add_argument("--projections", type=int, default=256, help="sliced-Wasserstein directions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grids", choices=("optimized", "none"), default="optimized",
                        help="extra time grids for dpmpp_2m, dpmpp_3m, unipc and dpmpp_2m_sde: 'optimized' "
                             "(default; anydiff.timesteps.optimize_grid from the oracle's denoiser) or 'none'")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: small tensors on a shared 2-core "
                             "machine run much faster single-threaded)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global EXTRA_GRIDS
    EXTRA_GRIDS = () if args.grids == "none" else (args.grids,)

    n2, n16 = (args.n, args.n) if args.n is not None else ((1000, 500) if args.quick else (20000, 10000))
    long_of = (lambda n: args.n_long) if args.n_long is not None else (lambda n: max(1, n // 4))
    args.n_ll = args.n_ll if args.n_ll is not None else (20 if args.quick else 200)
    schedule = ad.schedules.cosine(1000)
    problems = [
        Problem("ring-2d", "eight Gaussians, equal weights, std 0.1, on a circle of radius 2 "
                "(per-axis data variance 2.01)", ring_2d(), n2, long_of(n2)),
        Problem("mixture-16d", "D = 16, K = 5, weights (0.35, 0.25, 0.20, 0.12, 0.08), means ~ N(0, I), "
                "random full covariances with eigenvalues log-uniform in [0.01, 0.25] (seed 1234)",
                mixture_16d(), n16, long_of(n16)),
    ]

    t0 = time.perf_counter()
    print("# anydiff sampler benchmark (exact Gaussian-mixture denoisers)\n")
    print(f"Schedule: `ad.schedules.cosine(1000)`; model: `gm.model(schedule, prediction=\"eps\")` "
          f"(exact); seed {args.seed}; corrector_steps = {CORRECTOR_STEPS} for langevin and pc; "
          f"grids: dpmpp_2m, dpmpp_3m and unipc trailing and logsnr, euler and heun karras, others trailing"
          + (f", and {', '.join(OPTIMIZED_ROWS)} also {' and '.join(EXTRA_GRIDS)}" if EXTRA_GRIDS else "") + "; sampling in float32.\n"
          f"anydiff {ad.__version__}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{platform.processor() or platform.machine()}; git {git_state()}"
          + ("; QUICK smoke run" if args.quick else ""))

    tables = {p.name: sampler_tables(p, schedule, args) for p in problems}
    ll = likelihood_table(problems, schedule, args)

    # -- targets --------------------------------------------------------------------------------
    print("\n## Targets\n")
    print("Criterion 1a (as briefed): |SW2(dpmpp_2m (logsnr) @10) - SW2(ddpm (trailing) @1000)| <= 2 x "
          "the SW2 noise floor, both at the sample size of the 1000-evaluation column (dpmpp_2m is "
          "rerun at that size when it differs) against the same reference data.")
    print("Criterion 1b (stricter): SW2(dpmpp_2m (logsnr) @10) <= floor mean + 2 floor std at the "
          "table's n, i.e. indistinguishable from fresh data of that size (1a bounds only the "
          "difference, at the smaller n of the 1000 column, and lets a sampler pass at ~3x the floor).\n")
    ok_all = True

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    for p in problems:
        t = tables[p.name]
        n = p.n_long
        ddpm = t["results"][("ddpm", "trailing", BUDGETS[-1])]
        dpm_main = t["results"][("dpmpp_2m", "logsnr", 10)]
        dpm = dpm_main
        if n != p.n:
            dpm = run_cell(p, schedule, "dpmpp_2m", "logsnr", steps_for_budget("dpmpp_2m", 10, schedule, "logsnr"),
                           n, t["references"][n], args, t["e_logp"])
        floor = t["floors"][n][0]
        if ddpm.sw2 is None or dpm.sw2 is None:
            ok, diff = False, float("nan")
        else:
            diff = abs(dpm.sw2 - ddpm.sw2)
            ok = diff <= 2 * floor
        ok_all &= ok
        print(f"{verdict(ok)} (1a): {p.name}: dpmpp_2m (logsnr) @10 SW2 = {num(dpm.sw2)}, ddpm @1000 "
              f"SW2 = {num(ddpm.sw2)}, |difference| = {diff:.4f} <= 2 x floor = {2 * floor:.4f} (n = {n})")
        mean, std, _, _ = t["floors"][p.n]
        bound = mean + 2 * std
        ok = dpm_main.sw2 is not None and dpm_main.sw2 <= bound
        ok_all &= ok
        print(f"{verdict(ok)} (1b): {p.name}: dpmpp_2m (logsnr) @10 SW2 = {num(dpm_main.sw2)} <= "
              f"{mean:.4f} + 2 x {std:.4f} = {bound:.4f} (n = {p.n})")
    # issue #14: at 10 evaluations, the E[log p] gap within GAP_TOL[problem] of 1000-step DDPM's
    # and the mode weights within 5 % (total variation 0.05), for the best sampler and grid
    print("\nIssue #14 (10 evaluations): |E[log p] gap - gap of ddpm @1000| within 0.05 nats on the ring "
          "and 0.15 on the 16-D mixture, and mode-weight error <= 0.05; rows that meet both, best first:\n")
    for p in problems:
        res = tables[p.name]["results"]
        ref = res[("ddpm", "trailing", BUDGETS[-1])]
        tol = GAP_TOL.get(p.name, 0.15)
        scored = []
        for sampler, grid in rows():
            c = res[(sampler, grid, 10)]
            if c is None or c.logp_gap is None or ref.logp_gap is None or c.calls > 10:
                continue
            scored.append((abs(c.logp_gap - ref.logp_gap), c.mode_error, f"{sampler} ({grid})"))
        scored.sort()
        passing = [r for r in scored if r[0] <= tol and r[1] <= 0.05]
        ok = bool(passing)
        ok_all &= ok
        best = ", ".join(f"{name}: {d:.3f} nats, {m:.3f}" for d, m, name in (passing or scored)[:4])
        print(f"{verdict(ok)}: {p.name} (ddpm @1000 gap {ref.logp_gap:+.4f}, tolerance {tol}): "
              f"{len(passing)} of {len(scored)} rows; {'best' if passing else 'closest'}: {best}")
    mae = ll[("ring-2d", "exact", 1)][0]
    ok = mae < 0.01
    ok_all &= ok
    print(f"{'PASS' if ok else 'FAIL'}: ring-2d exact-divergence log-likelihood mean abs error "
          f"{mae:.4f} nats < 0.01")
    print(f"\nTotal wall time: {time.perf_counter() - t0:.0f} s.")
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
