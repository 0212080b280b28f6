"""Sampling and likelihood throughput of the estimators, on the CPU and a GPU in one run.

A ``VectorDiffusion`` with its default network (a residual MLP 3 x 128 with Fourier features)
is trained briefly on two moons (throughput does not depend on how long it trained), then timed:

* ``sample``: the default sampler (SDE-DPM-Solver++(2M), 100 steps) in the estimator's chunks;
* ``score_samples``: the probability-flow ODE with the exact divergence (float64).

Optionally (``--tabular DEVICES``) a ``TabularDiffusion`` on the generated 100,000-row x 50-column mixed
table: fit and sample 100,000 rows, for each network given with ``--tabular-nets``.

Each device reports rows per second; the CPU side uses fewer rows (its rate is what is compared).

    python benchmarks/throughput.py                        # CPU only
    python benchmarks/throughput.py --devices cpu,cuda     # both, the GPU at the issue's sizes
    python benchmarks/throughput.py --devices cpu,cuda --tabular cuda   # and the 100,000-row table on the GPU
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import anydiff as ad  # noqa: E402
from _common import git_revision  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> tuple[object, float]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def vector_rows(args, device: str) -> list[list[str]]:
    gpu = device.startswith("cuda")
    n_sample = args.gpu_sample_rows if gpu else args.cpu_sample_rows
    n_score = args.gpu_score_rows if gpu else args.cpu_score_rows
    X = ad.datasets.make_moons(max(n_score, 2000), random_state=0)
    est = ad.VectorDiffusion(max_steps=args.train_steps, device=device, random_state=0)
    _, fit_s = timed(lambda: est.fit(X), device)
    est.sample(1000, random_state=0)  # warm-up (kernels, allocator)
    samples, sample_s = timed(lambda: est.sample(n_sample, random_state=1), device)
    assert samples.shape == (n_sample, 2) and np.isfinite(samples).all()
    ll, score_s = timed(lambda: est.score_samples(X[:n_score]), device)
    assert np.isfinite(ll).all()
    return [
        [device, f"fit {args.train_steps} steps (batch 512)", f"{args.train_steps}", f"{fit_s:.1f}",
         f"{args.train_steps / fit_s:,.0f} steps/s"],
        [device, "sample (dpmpp_2m_sde, 100 steps)", f"{n_sample:,}", f"{sample_s:.1f}",
         f"{n_sample / sample_s:,.0f} rows/s"],
        [device, "score_samples (exact divergence, float64)", f"{n_score:,}", f"{score_s:.1f}",
         f"{n_score / score_s:,.0f} rows/s"],
    ]


def tabular_rows(args, device: str) -> list[list[str]]:
    from tabular_data import make_mixed

    from anydiff.tabular import TabularDiffusion

    df = make_mixed(args.tabular_rows, seed=4242, n_columns=50)
    rows = []
    for net in args.tabular_nets.split(","):
        hidden, depth, ff = (int(v) for v in net.split("x"))
        est = TabularDiffusion(hidden=hidden, depth=depth, fourier_features=ff, device=device, random_state=0)
        _, fit_s = timed(lambda: est.fit(df), device)
        synth, sample_s = timed(lambda: est.sample(len(df), random_state=1), device)
        assert synth.dtypes.equals(df.dtypes)
        rows.append([device, f"TabularDiffusion {hidden}x{depth}, {ff} Fourier features: fit "
                     f"{est.n_iter_} steps + sample", f"{len(df):,} x 50",
                     f"{fit_s:.1f} + {sample_s:.1f}", f"{len(df) / sample_s:,.0f} rows/s sampled"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="cpu", help="comma-separated, e.g. cpu,cuda")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--cpu-sample-rows", type=int, default=20_000)
    parser.add_argument("--gpu-sample-rows", type=int, default=1_000_000)
    parser.add_argument("--cpu-score-rows", type=int, default=1_000)
    parser.add_argument("--gpu-score-rows", type=int, default=100_000)
    parser.add_argument("--cpu-threads", type=int, default=1)
    parser.add_argument("--tabular", default="", metavar="DEVICES",
                        help="comma-separated devices on which to time TabularDiffusion on the 100,000-row table")
    parser.add_argument("--tabular-rows", type=int, default=100_000)
    parser.add_argument("--tabular-nets", default="256x3x0",
                        help="comma-separated HIDDENxDEPTHxFOURIER networks for --tabular")
    args = parser.parse_args()
    torch.set_num_threads(args.cpu_threads)
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    names = {d: torch.cuda.get_device_name(d) if d.startswith("cuda") else
             f"{platform.machine()} CPU, {args.cpu_threads} thread(s) of {os.cpu_count()}" for d in devices}
    print(f"# anydiff throughput, git {git_revision()}, torch {torch.__version__}, Python "
          f"{platform.python_version()}; " + "; ".join(f"{d}: {n}" for d, n in names.items()) + "\n")
    rows = []
    for device in devices:
        rows += vector_rows(args, device)
        if device in args.tabular.split(","):
            rows += tabular_rows(args, device)
    print("| device | what | rows | seconds | rate |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
