"""The 30-second contract of TabularDiffusion: fit and sample a 5,000-row, 15-column table on one
CPU core at the default settings.

The table is the generated mixed table of the tables benchmark (``tabular_data.make_mixed``:
numeric, integer, boolean, categorical, datetime columns with missing values). The process is
pinned to one core (``os.sched_setaffinity``) and torch to one thread. Rows:

* ``defaults``: ``TabularDiffusion()`` as shipped (bf16 autocast in training where the CPU has
  AMX tiles, float32 elsewhere);
* ``float32``: the defaults with ``mixed_precision="no"``, what a CPU without AMX runs;
* ``previous``: batch 1024 for 733 steps and SDE-DPM-Solver++(2M) at 50 steps (the defaults
  up to commit f107ba3);
* ``older``: batch 256 at 2e-3 for 2930 steps and 50 sampling steps (the settings before the
  speed-up of commit bbc81d8, but with the narrow time embedding, which cannot be switched off);

each with the C2ST of its 5,000 sampled rows against a held-out table of the same size.

    python benchmarks/tabular_time.py            # about 3 minutes on an idle core
    python benchmarks/tabular_time.py --quick    # a smoke run of a few seconds
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from anydiff.tabular import TabularDiffusion, metrics  # noqa: E402
from anydiff.training import cpu_has_amx  # noqa: E402
from _common import git_revision  # noqa: E402
from tabular_data import make_mixed  # noqa: E402

CONFIGS = {
    "defaults": {},
    "float32": {"mixed_precision": "no"},
    "previous": {"batch_size": 1024, "max_steps": 733, "sampler": "dpmpp_2m_sde", "sampling_steps": 50,
                 "mixed_precision": "no"},
    "older": {"batch_size": 256, "learning_rate": 2e-3, "max_steps": 2930, "sampler": "dpmpp_2m_sde",
              "sampling_steps": 50, "mixed_precision": "no"},
}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run(params: dict, train, holdout, quick: bool) -> dict:
    if quick:
        params = {**params, "max_steps": 20, "sampling_steps": 5}
    est = TabularDiffusion(random_state=0, device="cpu", **params)
    start = time.perf_counter()
    est.fit(train)
    fitted = time.perf_counter()
    synthetic = est.sample(len(train), random_state=1)
    done = time.perf_counter()
    return {"steps": est.n_iter_, "fit": fitted - start, "sample": done - fitted,
            "c2st": metrics.c2st(holdout, synthetic, random_state=0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 training steps, 5 sampling steps")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--configs", default="defaults,float32,previous", help=f"comma-separated, of {list(CONFIGS)}")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    train, holdout = make_mixed(args.rows, seed=0), make_mixed(args.rows, seed=1000)
    print(f"# TabularDiffusion, {args.rows} rows x {train.shape[1]} columns, one core of {cpu_model()}; "
          f"torch {torch.__version__}; AMX {'yes' if cpu_has_amx() else 'no'}; anydiff {git_revision()}"
          + (" (quick)" if args.quick else ""))
    print("\n| settings | steps | fit (s) | sample (s) | total (s) | C2ST |\n|---|---|---|---|---|---|")
    for name in args.configs.split(","):
        r = run(CONFIGS[name], train, holdout, args.quick)
        print(f"| {name} | {r['steps']} | {r['fit']:.1f} | {r['sample']:.1f} | {r['fit'] + r['sample']:.1f} | "
              f"{r['c2st']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
