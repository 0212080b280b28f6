"""Speed and accuracy of ``anydiff.log_likelihood`` against the former implementation.

Problems (cosine schedule, T = 1000, float64 data):

* ``ring-2d`` and ``mixture-16d``: the exact (Bayes-optimal) denoisers of the two Gaussian mixtures
  of ``benchmarks/samplers.py``, ``gm.model(schedule, prediction="eps")``; the error is measured
  against the exact data density ``gm.log_prob(x)`` (mean absolute error per row, nats);
* ``moons (learned)``: a small ``VectorDiffusion`` trained for ``max_steps`` = 300 on two moons,
  scored as ``score_samples`` does (its float64 denoiser on the standardized rows). There is no
  exact density: the table gives the mean absolute difference to today's result and to a
  converged reference (the new solver at rtol = atol = 1e-6).

Methods: "today" is the implementation before issue #14 (log-SNR time, Dormand-Prince 5(4) on
``(x, log-density)`` with the divergence at every stage, ``rtol = atol = 1e-5``), loaded from git
commit ``BASELINE_COMMIT``; "new" is ``anydiff.log_likelihood`` at several tolerances (the default
is 1e-3), and with the one-pass ``torch.func`` divergence. Every method scores the same rows in
one call; model calls per row are counted by a wrapper ("with div." = calls that take the
divergence, i.e. run with gradients). Speed is rows per second of process time (one thread),
the median of the rounds, the methods alternating within each round.

Run ``PYTHONPATH=. python benchmarks/likelihood.py`` (about 5-7 minutes on 2 CPU cores) or with
``--quick`` for a smoke run (about half a minute).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anydiff as ad  # noqa: E402
import anydiff.likelihood as lik  # noqa: E402
from samplers import markdown_table, mixture_16d, ring_2d  # noqa: E402

BASELINE_COMMIT = "7e6053c1662c146435ba63cc82f18a15933cf5ff"  # the last change to anydiff/likelihood.py before #14


def baseline_module():
    """The former ``anydiff/likelihood.py``, from git, as a module inside the package (None when
    git or the commit is unavailable)."""
    try:
        src = subprocess.run(["git", "show", f"{BASELINE_COMMIT}:anydiff/likelihood.py"], capture_output=True,
                             text=True, check=True, timeout=30, cwd=Path(__file__).resolve().parents[1]).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    module = types.ModuleType("anydiff._likelihood_baseline")
    module.__package__ = "anydiff"
    exec(compile(src, "anydiff/_likelihood_baseline.py", "exec"), module.__dict__)
    return module


class Counting:
    """Counts the rows a model is called on, and those called with gradients (divergence)."""

    def __init__(self, model):
        self.model, self.rows, self.grad_rows = model, 0, 0

    def __call__(self, x_t, t, cond=None):
        self.rows += x_t.shape[0]
        self.grad_rows += x_t.shape[0] if torch.is_grad_enabled() else 0
        return self.model(x_t, t, cond)


def _moons(n: int, seed: int):
    X = ad.datasets.make_moons(n, random_state=seed)
    return X[0] if isinstance(X, tuple) else X  # (X, labels) when labels are returned


def learned_moons(n: int, seed: int):
    """A VectorDiffusion trained for 300 steps on two moons; its float64 denoiser (as
    ``score_samples`` uses it), n fresh rows standardized, its schedule and prediction."""
    est = ad.VectorDiffusion(max_steps=300, random_state=0, device="cpu").fit(_moons(2000, 0))
    model = est._float64_model().eval()
    return model, torch.from_numpy(est._standardize(_moons(n, seed + 1))), est.schedule_, est.prediction


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (fewer rows, one round)")
    parser.add_argument("--n", type=int, default=None, help="rows per problem (default 200; 40 with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default 5; 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = args.n or (40 if args.quick else 200)
    rounds = args.rounds or (1 if args.quick else 5)
    schedule = ad.schedules.cosine(1000)
    base = baseline_module()

    def new(tol, one_pass=False):
        def run(model, x, **kw):
            lik.ONE_PASS_DIVERGENCE = one_pass
            try:
                return ad.log_likelihood(model, x, rtol=tol, atol=tol, **kw)
            finally:
                lik.ONE_PASS_DIVERGENCE = None
        return run

    methods = []
    if base is not None:
        methods += [("today: log-SNR, DP5 on (x, log p), rtol=atol=1e-5, loop div.", "today",
                     lambda model, x, **kw: base.log_likelihood(model, x, **kw)),
                    ("today's solver at rtol=atol=1e-3", "today@1e-3",
                     lambda model, x, **kw: base.log_likelihood(model, x, rtol=1e-3, atol=1e-3, **kw))]
    methods += [("new: angle, DP5 on x + Gauss-Legendre log p, rtol=atol=1e-5", "new@1e-5", new(1e-5)),
                 ("new, rtol=atol=1e-4", "new@1e-4", new(1e-4)),
                 ("**new defaults**, rtol=atol=1e-3", "new", new(1e-3)),
                 ("new defaults + one-pass torch.func divergence", "new+vmap", new(1e-3, True))]
    # torch.func's first use imports ~2 s of modules: not part of any method's time
    torch.func.vjp(lambda z: z.sin(), torch.zeros(1))

    problems = []
    for name, gm in (("ring-2d", ring_2d()), ("mixture-16d", mixture_16d())):
        x = gm.sample(n, torch.Generator().manual_seed(args.seed + 7), dtype=torch.float64)
        problems.append((name, gm.model(schedule), x, dict(schedule=schedule, prediction="eps"), gm.log_prob(x)))
    t0 = time.process_time()
    model, z, sched, pred = learned_moons(n, args.seed)
    train_s = time.process_time() - t0
    kw = dict(schedule=sched, prediction=pred)
    reference = ad.log_likelihood(model, z, rtol=1e-6, atol=1e-6, **kw)
    problems.append(("moons (learned)", model, z, kw, reference))

    print("# anydiff.log_likelihood: speed and accuracy (issue #14)\n")
    print(f"{n} rows per problem scored in one call; cosine schedule; float64; torch {torch.__version__}, "
          f"1 thread; {rounds} round(s), median process time; baseline = git {BASELINE_COMMIT[:8]}"
          + ("" if base is not None else " (UNAVAILABLE: no git; the today rows are missing)")
          + f"; learned model trained in {train_s:.0f} s (process time)." + (" QUICK run." if args.quick else ""))
    body = []
    for pname, model, x, kw, exact in problems:
        times = {key: [] for _, key, _ in methods}
        for _, _, fn in methods:  # warm-up (first-call costs), untimed
            fn(model, x[:4], **kw)
        results, calls = {}, {}
        for _ in range(rounds):
            for _, key, fn in methods:
                counting = Counting(model)
                start = time.process_time()
                results[key] = fn(counting, x, **kw)
                times[key].append(time.process_time() - start)
                calls[key] = (counting.rows / x.shape[0], counting.grad_rows / x.shape[0])
        ref_key = "today" if "today" in times else "new@1e-5"
        t_ref = statistics.median(times[ref_key])
        for label, key, _ in methods:
            t = statistics.median(times[key])
            err = float((results[key] - exact).abs().mean())
            err_max = float((results[key] - exact).abs().max())
            if pname.endswith("(learned)"):
                diff = float((results[key] - results[ref_key]).abs().mean())
                acc = f"{diff:.1e} (vs converged: {err:.1e}, max {err_max:.1e})"
            else:
                acc = f"{err:.1e} (max {err_max:.1e})"
            body.append([pname, label, acc, f"{calls[key][0]:.0f} ({calls[key][1]:.0f})", f"{x.shape[0] / t:.0f}",
                         f"{t_ref / t:.1f}x"])
    print()
    print(markdown_table(["problem", "method", "mean abs error, nats (oracles: vs exact log p; learned: vs today)",
                          "model calls / row (with div.)", "rows/s", "speed-up vs today"], body))
    print("\nOracle rows: error against the exact density of the data, gm.log_prob(x) (t = 0; the ODE "
          "starts at t_min = 1e-5, a negligible difference). The new solver's calls without gradients "
          "are the Runge-Kutta stages of the path x; its divergence calls are the three Gauss-Legendre "
          "nodes of each accepted step, batched into one call.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
