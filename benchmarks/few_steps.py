"""Few-step sampling of trained models: C2ST at 4 to 20 model evaluations against the 100-step default.

For each toy set (:mod:`anydiff.datasets`): one ``VectorDiffusion`` fit at the defaults (5000
points; optimized time grid), then progressive distillation (``distill``: 128 DDIM steps halved
down to 4, ``--round-steps`` optimizer steps per halving). Every setting draws 5000 samples,
scored by C2ST ROC-AUC against 5000 fresh reference points (``anydiff.metrics.c2st``; 0.5 is
best), next to the floor (fresh data against the same reference) in the same run:

* the default, SDE-DPM-Solver++(2M) on the model's own grid, 100 steps (= evaluations);
* the same sampler at 20 and 10 steps; DPM-Solver++(2M) and UniPC (order 3) at 10 and 20;
* the distilled students at 4, 8 and 16 DDIM steps (one evaluation each).

Model evaluations per sample are in the column names. Times are per 5000 samples on one thread.

    PYTHONPATH=. python benchmarks/few_steps.py            # all sets, about 5 min per set on one core
    PYTHONPATH=. python benchmarks/few_steps.py --quick    # smoke run
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import anydiff as ad
from anydiff.datasets import TOY_DATASETS, load_toy
from anydiff.metrics import c2st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_revision  # noqa: E402

SETTINGS = [  # (column, sampler, steps, use a student)
    ("default: SDE-2M x100", "dpmpp_2m_sde", 100, False),
    ("SDE-2M x20", "dpmpp_2m_sde", 20, False),
    ("SDE-2M x10", "dpmpp_2m_sde", 10, False),
    ("2M x20", "dpmpp_2m", 20, False),
    ("2M x10", "dpmpp_2m", 10, False),
    ("UniPC x20", "unipc", 20, False),
    ("UniPC x10", "unipc", 10, False),
    ("student x16", None, 16, True),
    ("student x8", None, 8, True),
    ("student x4", None, 4, True),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(TOY_DATASETS))
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--max-steps", type=int, default=5000)
    ap.add_argument("--round-steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.max_steps, args.round_steps = 1000, 300, 50
    torch.set_num_threads(1)
    sets = args.sets.split(",")
    table, times, extra = {}, {}, {}
    for name in sets:
        X = load_toy(name, args.n, random_state=args.seed)
        ref = load_toy(name, args.n, random_state=args.seed + 1000)
        fresh = load_toy(name, args.n, random_state=args.seed + 2000)
        est = ad.VectorDiffusion(max_steps=args.max_steps, device="cpu", random_state=args.seed)
        t0 = time.perf_counter()
        est.fit(X)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        est.distill(X, steps=4, teacher_steps=128, steps_per_round=args.round_steps)
        distill_s = time.perf_counter() - t0
        extra[name] = (fit_s, distill_s)
        row = {"floor (fresh data)": c2st(ref, fresh, random_state=args.seed)}
        trow = {}
        for column, sampler, steps, student in SETTINGS:
            est.set_params(sampler=sampler or est.sampler)
            t0 = time.perf_counter()
            S = est.sample(args.n, steps=steps, random_state=args.seed) if student else \
                est.set_params(sampling_steps=steps).sample(args.n, random_state=args.seed)
            trow[column] = time.perf_counter() - t0
            row[column] = c2st(ref, S, random_state=args.seed)
            est.set_params(sampler="dpmpp_2m_sde", sampling_steps=100)
        table[name], times[name] = row, trow
        print(f"# {name}: fit {fit_s:.0f} s, distill {distill_s:.0f} s", file=sys.stderr, flush=True)

    print(f"# few-step sampling, anydiff {git_revision()}, torch {torch.__version__}, one thread; "
          f"{args.n} points, fit {args.max_steps} steps, distillation 128 -> 4 DDIM steps, "
          f"{args.round_steps} steps per halving; seed {args.seed}")
    columns = ["floor (fresh data)"] + [c for c, *_ in SETTINGS]
    print("\nC2ST ROC-AUC (0.5 best)\n")
    print("| set | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name in sets:
        print(f"| {name} | " + " | ".join(f"{table[name][c]:.3f}" for c in columns) + " |")
    means = {c: np.mean([table[n][c] for n in sets]) for c in columns}
    print("| **mean** | " + " | ".join(f"**{means[c]:.3f}**" for c in columns) + " |")
    print("\nseconds per 5000 samples (one thread); fit and distillation seconds\n")
    print("| set | fit | distill | " + " | ".join(c for c, *_ in SETTINGS) + " |")
    print("|---" * (len(SETTINGS) + 3) + "|")
    for name in sets:
        print(f"| {name} | {extra[name][0]:.0f} | {extra[name][1]:.0f} | "
              + " | ".join(f"{times[name][c]:.2f}" for c, *_ in SETTINGS) + " |")


if __name__ == "__main__":
    main()
