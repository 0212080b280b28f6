"""The ``anydiff`` command: ``demo``, ``samplers``, ``fit``, ``sample``, ``score``, ``impute``, ``complete``.

Data files are ``.csv``, ``.npy`` or ``.parquet`` (:mod:`anydiff.datafiles`: strict reading,
all-or-nothing writing, observed cells written back as they were read). A table with text
columns (or ``fit --tabular``) gets a :class:`~anydiff.tabular.TabularDiffusion`, a numeric one a
:class:`~anydiff.VectorDiffusion`. Point clouds (a ``.npz``, or a ``.npy`` of shape (n_clouds,
n_points, 3); :mod:`anydiff.points.files`) get a :class:`~anydiff.PointCloudDiffusion`, which
``sample`` draws and ``complete`` completes partial scans with. Output paths are checked before
any work. Errors and warnings are one line on stderr, never a traceback; exit status 1 for an
error, 2 for a usage error, 130 for Ctrl-C. Training also runs data-parallel under
``torchrun --nproc_per_node=N -m anydiff fit ...``; only rank 0 writes the model.

Only the standard library is imported at start, so that Ctrl-C is handled from the first moment.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import warnings

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
USER_ERRORS = (ValueError, OSError, FloatingPointError, RuntimeError, ImportError)


class CLIError(ValueError):
    """A user-facing error: printed as one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command and pointing to ``--help``."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


# -- files -------------------------------------------------------------------------------------
def load_model(path: str):
    from .io import load

    return load(path)


def is_tabular(est) -> bool:
    return hasattr(est, "encoder_")


def is_points(est) -> bool:
    return hasattr(est, "train_points_")


def model_input(est, table, path: str):
    """The rows of ``table`` as the fitted model expects them: a DataFrame for a tabular model;
    for a vector model a DataFrame with the model's column names when it was fitted on a CSV with
    a header (the file's own header must then match), else the array."""
    if is_tabular(est):
        return table.as_frame()
    if table.values is None:
        raise CLIError(f"{path}: the table has columns that are not numbers; the model is a VectorDiffusion "
                       "of numbers (fit a table with text columns to get a TabularDiffusion)")
    names = getattr(est, "feature_names_in_", None)
    if table.values.shape[1] != est.n_features_in_:
        raise CLIError(f"{path}: {table.values.shape[1]} columns, but the model was fitted on "
                       f"{est.n_features_in_} features")
    if names is None:
        return table.values
    if table.header is not None and list(table.header) != list(names):
        raise CLIError(f"{path}: the columns {table.header} differ from the model's {list(names)}; "
                       "give them in the same order")
    import pandas as pd

    return pd.DataFrame(table.values, columns=list(names))


# -- commands ----------------------------------------------------------------------------------
ESTIMATOR_HELP = {  # every VectorDiffusion parameter but random_state (--seed) and verbose (--quiet)
    "max_steps": "training iterations",
    "batch_size": "training batch size",
    "learning_rate": "peak learning rate",
    "hidden": "MLP width",
    "depth": "residual blocks",
    "dropout": "dropout rate in the residual blocks",
    "fourier_features": "periodic input features per column (0 = off)",
    "fourier_scale": "standard deviation of their frequencies",
    "prediction": "what the network predicts: eps, x0 or v",
    "schedule": "noise schedule: cosine, linear or sigmoid",
    "n_timesteps": "steps of the discrete schedule",
    "sampler": "sampler used by `sample`",
    "sampling_steps": "sampling steps",
    "clip": "clamp samples to each column's training range",
    "timesteps": "sampling time grid: optimized (the model's own, VectorDiffusion only), logsnr, trailing or karras",
    "ema_decay": "decay of the weights' moving average",
    "label_dropout": "share of rows trained without their label (for guidance)",
    "reference_batch": "rows of the stable target field per training step (0 = plain targets)",
    "device": "auto, cpu or cuda",
}
TABULAR_HELP = {  # the parameters only TabularDiffusion has
    "max_onehot": "categories up to which a column is one-hot encoded (above: analog bits)",
    "column_types": "column kinds that override the types read from the file, e.g. zip=categorical,age=integer",
    "mixed_precision": "bf16 autocast in training: auto (on CUDA and on CPUs with AMX), bf16 or no",
}
POINTS_HELP = {  # the parameters only PointCloudDiffusion has
    "normalize": "how clouds are scaled: box, sphere or global",
    "train_points": "points per cloud in training (default: the smallest cloud's, at most 512)",
    "heads": "attention heads (must divide --hidden)",
    "architecture": "transformer (attention over the points) or latent (shape latent, pointwise decoder)",
    "latent_dim": "width of the shape latent (--architecture latent)",
    "kl_weight": "weight of the latent's KL term (--architecture latent)",
}


def column_types(text: str) -> dict:
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    if not pairs or any(not sep or not name.strip() for name, sep, _ in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=KIND pairs separated by commas, e.g. zip=categorical")
    return {name.strip(): kind.strip() for name, _, kind in pairs}


def cmd_fit(args) -> None:
    from ._utils import check_output_path
    from .datafiles import read_labels, read_table
    from .estimators import VectorDiffusion
    from .points.files import is_cloud_file, read_clouds

    check_output_path(args.output)
    clouds, tabular = is_cloud_file(args.data), False
    if clouds:
        from .points import PointCloudDiffusion

        if args.tabular:
            raise CLIError(f"--tabular is for tables; {args.data} holds point clouds")
        cls, kind = PointCloudDiffusion, "point clouds (PointCloudDiffusion)"
        X, labels = read_clouds(args.data, labels_path=args.labels)
    else:
        table = read_table(args.data, allow_text=True, typed=args.tabular)
        tabular = args.tabular or table.values is None
    if tabular:
        from .tabular import TabularDiffusion

        cls, X, kind = TabularDiffusion, table.as_frame(), "a table with text columns (TabularDiffusion)"
        if args.labels:
            raise CLIError("a table takes no --labels: keep the labels as a column, and draw a class with "
                           "`anydiff sample MODEL --condition COLUMN=VALUE`")
    elif not clouds:
        cls, X, kind = VectorDiffusion, table.values, "a numeric table (VectorDiffusion)"
        if table.header is not None:
            import pandas as pd

            X = pd.DataFrame(X, columns=table.header)
    params = {k: getattr(args, k) for k in {**ESTIMATOR_HELP, **TABULAR_HELP, **POINTS_HELP}
              if getattr(args, k) is not None}
    foreign = sorted(set(params) - set(cls().get_params()))
    if foreign:
        raise CLIError(f"{', '.join('--' + k.replace('_', '-') for k in foreign)}: not an option for {kind}")
    if not clouds:
        labels = read_labels(args.labels) if args.labels else None
    est = cls(random_state=args.seed, verbose=not args.quiet, **params)
    start = time.perf_counter()
    if tabular:
        est.fit(X)
    else:
        est.fit(X, labels)
    if int(os.environ.get("RANK", "0")) == 0:
        est.save(args.output)
        size = f"{len(X)} clouds" if clouds else f"{len(X)} rows x {X.shape[1]} columns"
        print(f"trained a {cls.__name__} on {size} in "
              f"{time.perf_counter() - start:.1f} s; final loss {est.loss_curve_[-1]:.4f}; wrote {args.output}")


def _label(est, text: str | None):
    """``--label`` as the model's label type (the labels of a model fitted on numbers are numbers)."""
    import numpy as np

    if text is None or est.classes_ is None or not np.issubdtype(est.classes_.dtype, np.number):
        return text
    try:
        value = float(text)
    except ValueError:
        raise CLIError(f"--label {text!r}: this model's labels are numbers, "
                       f"{est.classes_.tolist()[:10]}") from None
    return int(value) if np.issubdtype(est.classes_.dtype, np.integer) and value.is_integer() else value


def _conditions(est, pairs: list[str]) -> dict:
    """``--condition COLUMN=VALUE`` as a dict of values of each column's type."""
    import pandas as pd

    layout = {rec.name: rec for rec in est.encoder_.layout_}
    out = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or name not in layout:
            raise CLIError(f"--condition {pair!r}: give COLUMN=VALUE with a column of the model, "
                           f"{list(layout)[:20]}")
        rec = layout[name]
        if rec.categories is not None:
            match = [c for c in rec.categories if str(c).lower() == text.lower()]
            if not match:
                raise CLIError(f"--condition {pair!r}: {name} takes {[str(c) for c in rec.categories][:20]}")
            out[name] = match[0]
        elif rec.kind in ("datetime", "timedelta"):
            out[name] = pd.Timestamp(text) if rec.kind == "datetime" else pd.Timedelta(text)
        else:
            try:
                value = float(text)
            except ValueError:
                raise CLIError(f"--condition {pair!r}: {name} takes numbers") from None
            out[name] = int(value) if rec.kind == "integer" and value.is_integer() else value
    return out


def cmd_sample(args) -> None:
    from .datafiles import check_output, write_table
    from .points.files import check_cloud_output, write_clouds

    est = load_model(args.model)
    (check_cloud_output if is_points(est) else check_output)(args.output)
    if args.n_points is not None and not is_points(est):
        raise CLIError(f"--n-points is for point-cloud models; {args.model} holds a {type(est).__name__}")
    if args.sampler is not None:
        est.set_params(sampler=args.sampler)
    if args.steps is not None:
        est.set_params(sampling_steps=args.steps)
    est._validate_params()
    if is_points(est):
        if args.condition:
            raise CLIError("--condition is for models of tables; a PointCloudDiffusion takes --label")
        label = _label(est, args.label)
        x = est.sample(args.n, n_points=args.n_points or 2048, y=label, guidance_scale=args.guidance_scale,
                       random_state=args.seed)
        write_clouds(args.output, x, labels=None if label is None else [label] * args.n)
    elif is_tabular(est):
        if args.label is not None or args.guidance_scale is not None:
            raise CLIError("--label and --guidance-scale are for VectorDiffusion models; a table's model "
                           "takes --condition COLUMN=VALUE")
        conditions = _conditions(est, args.condition) if args.condition else None
        x = est.sample(args.n, conditions=conditions, random_state=args.seed)
        write_table(args.output, x)
    else:
        if args.condition:
            raise CLIError("--condition is for models of tables; this VectorDiffusion takes --label")
        x = est.sample(args.n, y=_label(est, args.label), guidance_scale=args.guidance_scale,
                       random_state=args.seed)
        names = getattr(est, "feature_names_in_", None)
        write_table(args.output, x, header=None if names is None else list(names))
    print(f"wrote {x.shape[0]} samples to {args.output}")


def cmd_score(args) -> None:
    from .datafiles import check_output, read_table, write_table

    if args.output:
        check_output(args.output)
    est = load_model(args.model)
    if not hasattr(est, "score_samples"):
        raise CLIError(f"{args.model} holds a {type(est).__name__}, which has no likelihood; score needs a "
                       "VectorDiffusion model")
    ll = est.score_samples(model_input(est, read_table(args.data), args.data))
    if args.output:
        write_table(args.output, ll[:, None], header=["log_likelihood"])
    print(f"mean log-likelihood {ll.mean():.4f} nats per row over {len(ll)} rows")


def cmd_impute(args) -> None:
    import numpy as np

    from .datafiles import check_output, read_table, write_table

    check_output(args.output)
    est = load_model(args.model)
    if is_points(est):
        raise CLIError(f"{args.model} holds a PointCloudDiffusion; complete partial clouds with "
                       "`anydiff complete MODEL PARTIAL.npy -o OUT.npy`")
    table = read_table(args.data, typed=is_tabular(est))
    X = model_input(est, table, args.data)
    filled = est.impute(X, random_state=args.seed)
    write_table(args.output, filled, source=table)
    print(f"filled {int(np.sum(X.isna().to_numpy() if hasattr(X, 'isna') else np.isnan(X)))} missing entries; "
          f"wrote {args.output}")


def cmd_complete(args) -> None:
    from .points.files import check_cloud_output, read_clouds, write_clouds

    check_cloud_output(args.output)
    est = load_model(args.model)
    if not is_points(est):
        raise CLIError(f"{args.model} holds a {type(est).__name__}; complete needs a PointCloudDiffusion model "
                       "(to fill the gaps of a table: `anydiff impute`)")
    scans, labels = read_clouds(args.data, min_points=1, single=True)
    if labels is not None:
        warnings.warn(f"{args.data}: 'labels' is not used; completion is not class-conditional")
    out = est.complete(scans, n_points=args.n_points, resample=args.resample, steps=args.steps,
                       random_state=args.seed)
    write_clouds(args.output, out)
    print(f"completed {1 if out.ndim == 2 else len(out)} cloud(s) to {args.n_points} points; wrote {args.output}")


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
    if args.output:  # before training: a missing matplotlib or folder must not cost the run
        check_figure(args.output)
    import torch

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


FIGURE_TYPES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def check_figure(path: str) -> None:
    from ._utils import check_output_path

    if os.path.splitext(path)[1].lower() not in FIGURE_TYPES:
        raise CLIError(f"{path}: unknown figure type; use one of {', '.join(FIGURE_TYPES)}")
    check_output_path(path)
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise CLIError("writing a figure needs matplotlib: pip install matplotlib (or pass -o '' for none)") from exc


def write_figure(path: str, samples: dict, reference) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ._utils import atomic_write
    from .plot import plot_samples

    fig, axes = plt.subplots(1, len(samples), figsize=(4 * len(samples), 4))
    for ax, (title, x) in zip(np.atleast_1d(axes), samples.items()):
        plot_samples(x, reference, ax=ax, title=title)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, dpi=100, format=os.path.splitext(path)[1].lower().lstrip(".").replace("jpg", "jpeg"))
    plt.close(fig)


# -- parser ------------------------------------------------------------------------------------
def add_estimator_options(parser: argparse.ArgumentParser) -> None:
    """One option per estimator parameter, typed and defaulted from the estimators themselves."""
    from .estimators import VectorDiffusion
    from .points import PointCloudDiffusion
    from .tabular import TabularDiffusion

    vector, table = VectorDiffusion().get_params(), TabularDiffusion().get_params()
    points = PointCloudDiffusion().get_params()
    for name, text in {**ESTIMATOR_HELP, **TABULAR_HELP, **POINTS_HELP}.items():
        default = vector.get(name, table.get(name))
        if name in POINTS_HELP:
            default = points[name]
            text = f"{text} (point clouds only{'' if default is None else f'; default: {default}'})"
        elif name in vector and name in table and table[name] != vector[name]:
            text = f"{text} (default: {default}; tables: {table[name]})"
        elif name not in vector:
            text = f"{text} (tables only; default: {default})"
        elif name not in table:
            text = f"{text} (numeric tables only; default: {default})"
        else:
            text = f"{text} (default: {default})"
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif name == "column_types":
            parser.add_argument(flag, dest=name, type=column_types, default=None, help=text)
        elif default is None:  # train_points
            parser.add_argument(flag, dest=name, type=positive_int, default=None, help=text)
        else:
            parser.add_argument(flag, dest=name, type=type(default), default=None, help=text)
    own = ", ".join(f"{k}={v}" for k, v in points.items() if k in vector and k in ESTIMATOR_HELP and v != vector[k])
    parser.epilog = (f"Point clouds (a .npz, or a .npy of shape (n_clouds, n_points, 3)) get a PointCloudDiffusion; "
                     f"its defaults differ: {own}; it has no "
                     + " or ".join("--" + k.replace("_", "-") for k in ESTIMATOR_HELP if k not in points) + ".")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="anydiff", description="Diffusion models for non-image data.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)

    p = sub.add_parser("demo", help="train on two moons, sample with several samplers, print quality")
    p.add_argument("-o", "--output", default="anydiff_demo.png", help="figure to write ('' for none)")
    p.add_argument("--quick", action="store_true", help="a few seconds instead of one to two minutes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("samplers", help="compare every sampler on an exact model (no training)")
    p.add_argument("-n", type=positive_int, default=4000, help="samples per sampler")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_samplers)

    p = sub.add_parser("fit", help="train a model on a data file (a table with text columns: TabularDiffusion)")
    p.add_argument("data", help="training data, .csv, .npy or .parquet, one row per sample; or point clouds, "
                                ".npy (n_clouds, n_points, 3) or .npz (one (n_i, 3) array per cloud, optional "
                                "'labels')")
    p.add_argument("--tabular", action="store_true",
                   help="fit a TabularDiffusion even if every column holds numbers (integer columns stay integers)")
    p.add_argument("-o", "--output", required=True, help="model file to write")
    p.add_argument("--labels", help="class labels, .csv or .npy with one value per row or cloud (conditional model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_estimator_options(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("sample", help="draw samples from a model file")
    p.add_argument("model")
    p.add_argument("-n", type=positive_int, required=True, help="number of samples")
    p.add_argument("-o", "--output", required=True, help=".csv, .npy or .parquet to write (point clouds: .npy "
                                                         "or .npz)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--n-points", type=positive_int, default=None, help="points per cloud (point clouds; default 2048)")
    p.add_argument("--sampler", default=None)
    p.add_argument("--steps", type=positive_int, default=None)
    p.add_argument("--label", default=None, help="class to sample (conditional models)")
    p.add_argument("--guidance-scale", type=float, default=None)
    p.add_argument("--condition", action="append", metavar="COLUMN=VALUE",
                   help="models of tables: every row gets this value (repeat for several columns)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("score", help="log-likelihood of each row of a data file (nats)")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("-o", "--output", default=None, help="per-row values, .csv or .npy")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("impute", help="fill the missing (empty / NA / NaN) entries of a data file")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("-o", "--output", required=True, help=".csv, .npy or .parquet to write")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=cmd_impute)

    p = sub.add_parser("complete", help="complete partial point clouds with a PointCloudDiffusion model")
    p.add_argument("model")
    p.add_argument("data", help="observed points: .npy (m, 3) or (k, m, 3), or .npz with one (m_i, 3) array per scan")
    p.add_argument("-o", "--output", required=True, help=".npy or .npz to write: the observed points first, exactly")
    p.add_argument("--n-points", type=positive_int, default=2048, help="points per completed cloud (default 2048)")
    p.add_argument("--resample", type=positive_int, default=10, help="RePaint repeats per step (default 10)")
    p.add_argument("--steps", type=positive_int, default=None, help="sampler steps (default: the model's, at least 50)")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=cmd_complete)
    return parser


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether Ctrl-C is behind ``exc``: numpy, for one, turns a KeyboardInterrupt during its own
    import into an ImportError with a long advice message."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


class _InterruptWatch:
    """Python's own Ctrl-C handling (raise KeyboardInterrupt), remembering that it happened: a
    library may turn the KeyboardInterrupt into another error without chaining it (numpy does, when
    interrupted while its C extension initialises). Installed only where Python's default handler
    is in place (not where SIGINT is ignored or handled by the caller), and removed afterwards."""

    def __init__(self):
        self.seen = False
        self._previous = None

    def __call__(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self)
        return self

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"anydiff: warning: {str(message).splitlines()[0]}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    with _InterruptWatch() as interrupt:
        return _run(argv, interrupt)


def _run(argv, interrupt: _InterruptWatch) -> int:
    command = "anydiff"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        command = f"anydiff {args.command}"
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            args.func(args)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as exc:
        if interrupt.seen or _caused_by_interrupt(exc):
            print(f"{command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
