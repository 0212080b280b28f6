"""The ``anydiff`` command: ``demo``, ``samplers``, ``fit``, ``sample``, ``score``, ``impute``.

Data files are ``.csv`` (comma-separated numbers, an optional header line) or ``.npy`` (read
without pickle). Errors are one line on stderr and a non-zero exit, never a traceback. Training
also runs data-parallel under ``torchrun --nproc_per_node=N -m anydiff fit ...``; only rank 0
writes the model.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

EXIT_USAGE, EXIT_ERROR = 2, 1


class CLIError(Exception):
    """A user-facing error: printed as one line."""


# -- files -------------------------------------------------------------------------------------
def read_array(path: str) -> np.ndarray:
    """A 2-D float array from .csv (optional header) or .npy (no pickle)."""
    if not os.path.isfile(path):
        raise CLIError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            data = np.load(path, allow_pickle=False)
        elif ext == ".csv":
            with open(path, encoding="utf-8") as fh:
                first = fh.readline()
            try:
                [float(v) for v in first.strip().split(",") if v.strip()]
                skip = 0
            except ValueError:
                skip = 1  # a header line
            data = np.genfromtxt(path, delimiter=",", skip_header=skip, dtype=np.float64,
                                 missing_values=("", "nan", "NaN", "NA"), filling_values=np.nan)
        else:
            raise CLIError(f"{path}: unknown file type {ext!r}; use .csv or .npy")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise CLIError(f"{path}: cannot read it as numbers ({exc})") from exc
    data = np.asarray(data, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[0] == 0:
        raise CLIError(f"{path}: expected a table of shape (rows, columns), got shape {data.shape}")
    return data


def write_array(path: str, data: np.ndarray) -> None:
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".csv", ".npy"):
        raise CLIError(f"{path}: unknown output type {ext!r}; use .csv or .npy")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CLIError(f"{path}: the folder {directory} does not exist")
    if ext == ".npy":
        np.save(path, data)
    else:
        np.savetxt(path, data, delimiter=",", fmt="%.10g")


def load_model(path: str):
    from .io import load

    return load(path)


# -- commands ----------------------------------------------------------------------------------
ESTIMATOR_OPTIONS = {  # option -> (type, help); defaults come from VectorDiffusion itself
    "max_steps": (int, "training iterations"),
    "batch_size": (int, "training batch size"),
    "learning_rate": (float, "peak learning rate"),
    "hidden": (int, "MLP width"),
    "depth": (int, "residual blocks"),
    "fourier_features": (int, "periodic input features per column (0 = off)"),
    "reference_batch": (int, "rows of the stable target field per training step (0 = plain targets)"),
    "prediction": (str, "eps, x0 or v"),
    "schedule": (str, "cosine, linear or sigmoid"),
    "sampler": (str, "sampler used by `sample`"),
    "sampling_steps": (int, "sampling steps"),
    "device": (str, "auto, cpu or cuda"),
}


def cmd_fit(args) -> None:
    from .estimators import VectorDiffusion

    X = read_array(args.data)
    params = {k: getattr(args, k) for k in ESTIMATOR_OPTIONS if getattr(args, k) is not None}
    labels = read_array(args.labels)[:, 0] if args.labels else None
    est = VectorDiffusion(random_state=args.seed, verbose=not args.quiet, **params)
    start = time.perf_counter()
    est.fit(X, labels)
    if int(os.environ.get("RANK", "0")) == 0:
        est.save(args.output)
        print(f"trained on {X.shape[0]} rows x {X.shape[1]} columns in {time.perf_counter() - start:.1f} s; "
              f"final loss {est.loss_curve_[-1]:.4f}; wrote {args.output}")


def cmd_sample(args) -> None:
    est = load_model(args.model)
    if args.sampler:
        est.set_params(sampler=args.sampler)
    if args.steps:
        est.set_params(sampling_steps=args.steps)
    label = args.label
    if label is not None and est.classes_ is not None and np.issubdtype(est.classes_.dtype, np.number):
        label = float(label) if "." in label else int(label)
    x = est.sample(args.n, y=label, guidance_scale=args.guidance_scale, random_state=args.seed)
    write_array(args.output, x)
    print(f"wrote {x.shape[0]} samples to {args.output}")


def cmd_score(args) -> None:
    est = load_model(args.model)
    ll = est.score_samples(read_array(args.data))
    if args.output:
        write_array(args.output, ll[:, None])
    print(f"mean log-likelihood {ll.mean():.4f} nats per row over {len(ll)} rows")


def cmd_impute(args) -> None:
    est = load_model(args.model)
    X = read_array(args.data)
    filled = est.impute(X, random_state=args.seed)
    write_array(args.output, filled)
    print(f"filled {int(np.isnan(X).sum())} missing entries; wrote {args.output}")


def cmd_samplers(args) -> None:
    """Every sampler on the exact denoiser of an eight-Gaussian ring: no training needed."""
    import torch

    import anydiff as ad
    from .datasets import eight_gaussians_mixture
    from .metrics import mode_weight_error, sliced_wasserstein
    from .sampling import SAMPLERS, model_evaluations

    schedule, gm, n = ad.schedules.cosine(1000), eight_gaussians_mixture(0.2), args.n
    model = gm.model(schedule, prediction="eps")
    data = gm.sample(n, torch.Generator().manual_seed(args.seed + 1))
    floor = sliced_wasserstein(gm.sample(n, torch.Generator().manual_seed(args.seed + 2)), data,
                               generator=torch.Generator().manual_seed(0))
    print(f"exact denoiser of an 8-Gaussian ring, cosine schedule, n={n}; sliced W2 between two "
          f"fresh data sets (sampling noise): {floor:.4f}\n")
    print("| sampler | grid | steps | model calls | sliced W2 | mode-weight error | time (s) |")
    print("|---|---|---|---|---|---|---|")
    grids = {"euler": "karras", "heun": "karras", "dpmpp_2m": "logsnr"}
    for name in SAMPLERS:
        steps, grid = {"langevin": 100, "pc": 50, "euler_maruyama": 100, "ddpm": 100}.get(name, 20), grids.get(name, "trailing")
        start = time.perf_counter()
        x = ad.sample(model, (n, 2), schedule=schedule, sampler=name, steps=steps, timesteps=grid,
                      generator=torch.Generator().manual_seed(args.seed))
        print(f"| {name} | {grid} | {steps} | {model_evaluations(name, steps, schedule=schedule, timesteps=grid)} | "
              f"{sliced_wasserstein(x, data, generator=torch.Generator().manual_seed(0)):.4f} | "
              f"{mode_weight_error(x, gm):.4f} | {time.perf_counter() - start:.2f} |")
    x = gm.sample(256, torch.Generator().manual_seed(args.seed + 3), dtype=torch.float64)
    err = (ad.log_likelihood(model, x, schedule=schedule) - gm.log_prob(x)).abs().mean()
    print(f"\nprobability-flow ODE log-likelihood on 256 points: mean |error| {err:.5f} nats")


def cmd_demo(args) -> None:
    """Train on two moons, sample with several samplers, print quality, write a figure."""
    from .datasets import make_moons
    from .estimators import VectorDiffusion
    from .metrics import c2st, sliced_wasserstein

    quick = args.quick
    X = make_moons(2000 if quick else 8000, noise=0.1, random_state=0)
    reference = make_moons(2000 if quick else 5000, noise=0.1, random_state=1)
    est = VectorDiffusion(max_steps=200 if quick else 3000, random_state=0, verbose=not args.quiet)
    start = time.perf_counter()
    est.fit(X)
    print(f"trained VectorDiffusion on two moons ({len(X)} points, {est.max_steps} steps) in "
          f"{time.perf_counter() - start:.1f} s\n")
    print("| sampler | steps | C2ST AUC (0.5 = indistinguishable) | sliced W2 | time (s) |")
    print("|---|---|---|---|---|")
    import torch

    samples = {}
    for sampler, steps in (("dpmpp_2m_sde", 100), ("dpmpp_2m", 20), ("ddim", 20), ("ddpm", 100), ("heun", 10)):
        est.set_params(sampler=sampler, sampling_steps=steps)
        start = time.perf_counter()
        x = est.sample(len(reference), random_state=0)
        elapsed = time.perf_counter() - start
        samples[f"{sampler}, {steps} steps"] = x
        sw = sliced_wasserstein(x, reference, generator=torch.Generator().manual_seed(0))
        print(f"| {sampler} | {steps} | {c2st(x, reference, n_splits=3):.3f} | {sw:.4f} | {elapsed:.2f} |")
    noise = sliced_wasserstein(make_moons(len(reference), noise=0.1, random_state=2), reference,
                               generator=torch.Generator().manual_seed(0))
    print(f"\nsliced W2 between two fresh data sets (sampling noise): {noise:.4f}")
    if args.output:
        write_figure(args.output, samples, reference)
        print(f"wrote {args.output}")


def write_figure(path: str, samples: dict, reference: np.ndarray) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise CLIError("writing a figure needs matplotlib: pip install 'anydiff[plot]'") from exc
    from .plot import plot_samples

    fig, axes = plt.subplots(1, len(samples), figsize=(4 * len(samples), 4))
    for ax, (title, x) in zip(np.atleast_1d(axes), samples.items()):
        plot_samples(x, reference, ax=ax, title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anydiff", description="Diffusion models for non-image data.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="train on two moons, sample with several samplers, print quality")
    p.add_argument("-o", "--output", default="anydiff_demo.png", help="figure to write ('' for none)")
    p.add_argument("--quick", action="store_true", help="a few seconds instead of about a minute")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("samplers", help="compare every sampler on an exact model (no training)")
    p.add_argument("-n", type=int, default=4000, help="samples per sampler")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_samplers)

    p = sub.add_parser("fit", help="train a VectorDiffusion model on a data file")
    p.add_argument("data", help="training data, .csv or .npy, one row per sample")
    p.add_argument("-o", "--output", required=True, help="model file to write")
    p.add_argument("--labels", help="class labels, .csv or .npy with one value per row (conditional model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    for name, (kind, text) in ESTIMATOR_OPTIONS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=text)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("sample", help="draw samples from a model file")
    p.add_argument("model")
    p.add_argument("-n", type=int, required=True, help="number of samples")
    p.add_argument("-o", "--output", required=True, help=".csv or .npy to write")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--sampler", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--label", default=None, help="class to sample (conditional models)")
    p.add_argument("--guidance-scale", type=float, default=None)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("score", help="log-likelihood of each row of a data file (nats)")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("-o", "--output", default=None, help="per-row values, .csv or .npy")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("impute", help="fill the missing (NaN / empty) entries of a data file")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=cmd_impute)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        args.func(args)
    except CLIError as exc:
        print(f"anydiff {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (ValueError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"anydiff {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"anydiff {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
