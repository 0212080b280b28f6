"""Rotation-distribution benchmark: unconditional ``PoseDiffusion`` fitted to distributions on SO(3).

Distributions (``--train`` draws each):

* ``mixture``: 4 modes at random rotations, weights 0.4 / 0.3 / 0.2 / 0.1, each blurred by a
  Gaussian rotation vector of ``--blur`` degrees per axis (``R = C exp([w]_x)``, ``w ~ N(0, s^2 I)``);
* ``cube``: the 24 rotations of the cube (the octahedral group: signed permutation matrices with
  det +1), equal weights, each blurred the same way -- the pose set of a cube-symmetric object;
* ``uniform``: Haar-uniform rotations (Shoemake 1992).

Each is fitted twice, with the rotations given as quaternions (w, x, y, z) and as matrices; the
model encodes both in the 6-D representation (Zhou et al. 2019); with one seed the two fits see the
same numbers, so their rows agree exactly -- a check that the two inputs are handled alike.

Evaluation against ``--eval`` fresh draws of the truth: the squared geodesic MMD
(``ad.poses.metrics.geodesic_mmd``, bandwidth ``--bandwidth`` rad; Gretton et al. 2012), with the
MMD between two independent truth sets of the same size as the floor (same run); mode coverage and
precision at ``--threshold`` degrees (``mode_coverage``: the share of modes with a sample that
near, the share of samples that near some mode); and the mode weights (share of samples whose
nearest mode is each mode; the total variation distance to the true weights, and for the mixture
the four shares). The truth's own coverage / precision / TV are printed as the floor.

Run: ``python benchmarks/poses_rotations.py`` (defaults: 20k draws, 1500 steps of 256, MLP 256 x 4,
six fits; about 7 min on an idle CPU core, 13 min measured with the two cores of the machine shared
with another job) or ``--quick`` for a smoke run (about 15 s).
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import roma
import torch

import anydiff as ad
from _common import git_revision

rot = ad.poses.rotations
metrics = ad.poses.metrics


def cube_group() -> torch.Tensor:
    """The 24 rotations of the cube: signed permutation matrices with det +1."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((-1.0, 1.0), repeat=3):
            M = np.zeros((3, 3))
            M[range(3), perm] = signs
            if np.linalg.det(M) > 0:
                out.append(M)
    return torch.tensor(np.array(out))


class Distribution:
    """Modes (M, 3, 3) with weights, blurred by ``blur_deg`` per axis; ``modes=None``: uniform."""

    def __init__(self, name, modes, weights, blur_deg):
        self.name, self.modes, self.blur = name, modes, np.radians(blur_deg)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)

    def draw(self, n, gen):
        if self.modes is None:
            return rot.random_rotations(n, generator=gen)
        k = torch.multinomial(self.weights, n, replacement=True, generator=gen)
        w = self.blur * torch.randn(n, 3, generator=gen, dtype=torch.float64)
        return self.modes[k] @ roma.rotvec_to_rotmat(w)


def as_dataset(R, representation):
    import xarray as xr

    if representation == "quaternion":
        return xr.Dataset({"q": (("sample", "wxyz"), rot.matrix_to_quaternion(R).numpy(), {"kind": "quaternion"})})
    return xr.Dataset({"R": (("sample", "row", "col"), R.numpy(), {"kind": "rotation_matrix"})})


def as_matrices(ds):
    if "q" in ds:
        return rot.quaternion_to_matrix(torch.from_numpy(ds["q"].values))
    return torch.from_numpy(ds["R"].values)


def mode_stats(R, dist, threshold):
    """(coverage, precision, TV to the true weights, shares) or Nones for the uniform law."""
    if dist.modes is None:
        return None, None, None, None
    c = metrics.mode_coverage(R, dist.modes, threshold_deg=threshold)
    share = c["counts"] / c["counts"].sum()
    tv = 0.5 * float(np.abs(share - dist.weights.numpy()).sum())
    return c["coverage"], c["precision"], tv, share


def shares(share):
    """The mode shares of a few-mode mixture, "-" for many modes or none."""
    return "-" if share is None or len(share) > 4 else " / ".join(f"{s:.3f}" for s in share)


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--sampling-steps", type=int, default=30)
    ap.add_argument("--eval", type=int, default=2000)
    ap.add_argument("--blur", type=float, default=4.0, help="degrees per axis")
    ap.add_argument("--threshold", type=float, default=15.0, help="degrees")
    ap.add_argument("--bandwidth", type=float, default=0.2, help="MMD kernel bandwidth, radians")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2k draws, 100 steps, 300 samples")
    args = ap.parse_args(argv)
    if args.quick:
        args.train, args.steps, args.eval, args.hidden, args.depth = 2000, 100, 300, 64, 2

    gen = torch.Generator().manual_seed(args.seed)
    dists = [Distribution("mixture (4 modes)", rot.random_rotations(4, generator=gen), [0.4, 0.3, 0.2, 0.1],
                          args.blur),
             Distribution("cube group (24 modes)", cube_group(), np.full(24, 1 / 24), args.blur),
             Distribution("uniform", None, None, 0.0)]
    rows, floors, fit_times = [], [], []
    for dist in dists:
        R_train = dist.draw(args.train, gen)
        truth_a, truth_b = dist.draw(args.eval, gen), dist.draw(args.eval, gen)
        mmd_floor = metrics.geodesic_mmd(truth_a, truth_b, bandwidth=args.bandwidth)
        cov, prec, tv, share = mode_stats(truth_b, dist, args.threshold)
        floors.append([dist.name, "truth vs truth (floor)", f"{mmd_floor:.5f}", fmt(cov, ".3f"), fmt(prec, ".3f"),
                       fmt(tv, ".3f"), shares(share)])
        for representation in ("quaternion", "rotation_matrix"):
            model = ad.PoseDiffusion(max_steps=args.steps, batch_size=args.batch, hidden=args.hidden, depth=args.depth,
                                     sampling_steps=args.sampling_steps, device=args.device, random_state=args.seed)
            t0 = time.perf_counter()
            model.fit(as_dataset(R_train, representation))
            fit_times.append(time.perf_counter() - t0)
            samples = as_matrices(model.sample(args.eval, random_state=args.seed + 1))
            mmd = metrics.geodesic_mmd(samples, truth_a, bandwidth=args.bandwidth)
            cov, prec, tv, share = mode_stats(samples, dist, args.threshold)
            rows.append([dist.name, f"PoseDiffusion ({representation})", f"{mmd:.5f}", fmt(cov, ".3f"),
                         fmt(prec, ".3f"), fmt(tv, ".3f"), shares(share)])

    print(f"# Rotation distributions, anydiff {git_revision()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {model._device()}")
    print(f"# {args.train} draws, {args.steps} steps of {args.batch}, MLP {args.hidden} x {args.depth}, "
          f"fit {np.mean(fit_times):.0f} s each; {args.eval} samples vs {args.eval} fresh draws, "
          f"{args.sampling_steps} sampling steps; blur {args.blur:g} deg per axis; MMD bandwidth "
          f"{args.bandwidth:g} rad; modes within {args.threshold:g} deg; mixture weights 0.4 / 0.3 / 0.2 / 0.1")
    header = ["distribution", "samples", "geodesic MMD^2", "mode coverage", "mode precision",
              "TV of mode weights", "mode shares"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for i, f in enumerate(floors):
        for r in [f] + rows[2 * i:2 * i + 2]:
            print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
