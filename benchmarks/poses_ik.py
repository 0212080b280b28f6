"""Inverse-kinematics benchmark: PoseDiffusion as a multi-solution IK solver for the Franka Panda,
IKFlow's protocol (Ames et al. 2022), against damped least squares from random seeds.

Training data: ``--train`` joint configurations uniform within the Panda's limits
(``ad.poses.panda()``) and their end-effector poses by forward kinematics. The model is
``PoseDiffusion`` with the joint angles as the pose (one ``angle`` variable, per-joint limits,
scaled inside them) and the target pose as the condition (a ``position`` and a
``rotation_matrix`` variable, 6-D encoded).

Evaluation: ``--targets`` fresh target poses (the forward kinematics of fresh uniform
configurations, so every target is reachable), ``--solutions`` solutions each. Per method:
median / mean position error (mm) and rotation error (deg) of the solutions' forward kinematics
to their target, the share of solutions within joint limits, the share inside 5 mm and 2 deg,
diversity (mean pairwise distance between a target's solutions in joint space, radians, as in
IKFlow), and the wall time per 1000 solutions (sampling, guidance and refinement included).

Methods:

* ``raw``: samples of the model.
* ``guided``: the same with guidance by the forward-kinematics error (position error in mm plus
  rotation error in degrees, ``fk_energy``), ``guidance_scale`` chosen on ``--val-targets``
  separate targets among ``--scales`` (by the median position error).
* ``raw + DLS`` / ``guided + DLS``: ``--refine-steps`` damped-least-squares steps
  (``ad.poses.refine_ik``) seeded by those samples.
* baseline ``random + DLS``: the same refinement from uniformly random seeds within limits, with
  as many restarts as the time of ``guided + DLS`` allows: each of a target's solutions is the
  best of R restarts, R = (time of guided + DLS) / (time of one batch of refinements), at least 1.

Run: ``python benchmarks/poses_ik.py`` (defaults: 100k training poses, 8000 steps; about 12 min
on one CPU core) or ``--quick`` for a smoke run.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import anydiff as ad
from _common import git_revision


def pose_dataset(chain, q=None, p=None, R=None):
    import xarray as xr

    data = {}
    if q is not None:
        data["q"] = (("sample", "joint"), q.numpy(), {"kind": "angle", "limits": chain.joint_limits.tolist()})
    if p is not None:
        data["position"] = (("sample", "xyz"), p.numpy(), {"kind": "position", "units": "m"})
        data["rotation"] = (("sample", "row", "col"), R.numpy(), {"kind": "rotation_matrix"})
    return xr.Dataset(data)


def fk_energy(chain):
    """guidance(pose, cond): the position error in mm plus the rotation error in degrees (the chordal
    distance ||R - R*||_F / sqrt(2), which is the angle for small ones), each smoothed at 0 so that
    the gradient stays finite: a pull of constant strength towards the target."""
    def energy(pose, cond):
        p, R = chain.forward(pose["q"])
        pos_mm = ((p - cond["position"]) * 1000).pow(2).sum(-1).add(1e-6).sqrt()
        rot_deg = (R - cond["rotation"]).pow(2).sum((-1, -2)).add(1e-12).sqrt() * (180 / np.pi / np.sqrt(2))
        return pos_mm + rot_deg
    return energy


def errors(chain, q, p_t, R_t):
    """(position error mm, rotation error deg) of configurations q (n, H, J) to targets (n, 3), (n, 3, 3)."""
    n, H, J = q.shape
    p, R = chain.forward(q.reshape(n * H, J))
    pos = (p.reshape(n, H, 3) - p_t[:, None]).norm(dim=-1) * 1000
    rot = ad.poses.rotations.geodesic_distance(R.reshape(n, H, 3, 3), R_t[:, None].expand(n, H, 3, 3))
    return pos, torch.rad2deg(rot)


def diversity(q):
    """Mean pairwise L2 distance between a target's solutions (radians), averaged over targets."""
    d = torch.cdist(q, q)
    H = q.shape[1]
    return float(d.sum((1, 2)).mean() / (H * (H - 1)))


def solved_diversity(q, ok):
    """Mean pairwise distance between a target's solved solutions, over targets with two or more."""
    d = torch.cdist(q, q)
    pair = ok[:, :, None] & ok[:, None, :] & ~torch.eye(q.shape[1], dtype=torch.bool)
    k = ok.sum(1)
    keep = k >= 2
    return float(((d * pair).sum((1, 2))[keep] / (k[keep] * (k[keep] - 1))).mean()) if keep.any() else float("nan")


def row(name, chain, q, p_t, R_t, seconds):
    pos, rot = errors(chain, q, p_t, R_t)
    lim = chain.joint_limits.to(q.dtype)
    within = ((q >= lim[:, 0] - 1e-9) & (q <= lim[:, 1] + 1e-9)).all(-1)
    ok = (pos < 5) & (rot < 2)
    fine = (pos < 0.1) & (rot < 0.1)
    n = q.shape[0] * q.shape[1]
    return [name, f"{pos.median():.3g}", f"{pos.mean():.3g}", f"{rot.median():.3g}", f"{rot.mean():.3g}",
            f"{100 * within.double().mean():.1f}", f"{100 * ok.double().mean():.1f}",
            f"{100 * fine.double().mean():.1f}", f"{diversity(q):.3f}", f"{solved_diversity(q, ok):.3f}",
            f"{1000 * seconds / n:.3f}"]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--sampling-steps", type=int, default=20)
    ap.add_argument("--targets", type=int, default=500)
    ap.add_argument("--val-targets", type=int, default=50)
    ap.add_argument("--solutions", type=int, default=20)
    ap.add_argument("--refine-steps", type=int, default=5)
    ap.add_argument("--scales", default="0,1e-6,3e-6,1e-5,3e-5,1e-4")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model-file", default=None,
                    help="load the fitted model from this file if it exists, else fit and save it there")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 4k poses, 200 steps, 40 targets")
    args = ap.parse_args(argv)
    if args.quick:
        args.train, args.steps, args.targets, args.val_targets, args.hidden = 4000, 200, 40, 10, 64

    chain = ad.poses.panda()
    gen = torch.Generator().manual_seed(args.seed)
    q_train = chain.sample_configurations(args.train, generator=gen)
    p_train, R_train = chain.forward(q_train)
    if args.model_file and Path(args.model_file).exists():
        model, fit_s = ad.load(args.model_file), float("nan")
        model.set_params(sampling_steps=args.sampling_steps)
    else:
        model = ad.PoseDiffusion(max_steps=args.steps, batch_size=args.batch, hidden=args.hidden, depth=args.depth,
                                 sampling_steps=args.sampling_steps, device=args.device, random_state=args.seed)
        _, fit_s = timed(lambda: model.fit(pose_dataset(chain, q_train),
                                           cond=pose_dataset(chain, p=p_train, R=R_train)))
        if args.model_file:
            model.save(args.model_file)

    def targets(n):
        q = chain.sample_configurations(n, generator=gen)
        p, R = chain.forward(q)
        return p, R

    H = args.solutions
    energy = fk_energy(chain)

    def draw(p_t, R_t, scale):
        ds = model.sample(cond=pose_dataset(chain, p=p_t, R=R_t), n_hypotheses=H, random_state=args.seed,
                          guidance=energy if scale > 0 else None, guidance_scale=scale)
        return torch.from_numpy(ds["q"].values)

    # guidance scale chosen on separate targets
    p_v, R_v = targets(args.val_targets)
    scales = [float(s) for s in args.scales.split(",")]
    val = []
    for s in scales:
        pos, rot = errors(chain, draw(p_v, R_v, s), p_v, R_v)
        val.append((float(pos.median()), s))
    best_scale = min(val)[1]

    p_t, R_t = targets(args.targets)
    refine = lambda q: ad.poses.refine_ik(  # noqa: E731
        chain, q.reshape(-1, q.shape[-1]), p_t.repeat_interleave(H, 0), R_t.repeat_interleave(H, 0),
        steps=args.refine_steps).reshape(q.shape)
    q_raw, raw_s = timed(lambda: draw(p_t, R_t, 0.0))
    q_guided, guided_s = timed(lambda: draw(p_t, R_t, best_scale))
    q_raw_ref, raw_ref_s = timed(lambda: refine(q_raw))
    q_guided_ref, guided_ref_s = timed(lambda: refine(q_guided))

    # baseline: random seeds, the same refinement, as many restarts as guided + DLS's time allows
    q_seed = chain.sample_configurations(args.targets * H, generator=gen).reshape(args.targets, H, -1)
    q_rand, one_s = timed(lambda: refine(q_seed))
    restarts = max(1, int((guided_s + guided_ref_s) // one_s))
    best, best_err = q_rand, None
    pos, rot = errors(chain, q_rand, p_t, R_t)
    best_err = pos + rot  # mm + deg: a combined score to pick the best restart
    for _ in range(restarts - 1):
        q_new = refine(chain.sample_configurations(args.targets * H, generator=gen).reshape(args.targets, H, -1))
        pos, rot = errors(chain, q_new, p_t, R_t)
        better = (pos + rot) < best_err
        best = torch.where(better[..., None], q_new, best)
        best_err = torch.where(better, pos + rot, best_err)
    base_s = one_s * restarts

    header = ["method", "pos median (mm)", "pos mean (mm)", "rot median (deg)", "rot mean (deg)", "within limits %",
              "< 5 mm & 2 deg %", "< 0.1 mm & 0.1 deg %", "diversity (rad)", "diversity of the solved (rad)",
              "s per 1000 solutions"]
    rows = [row("raw", chain, q_raw, p_t, R_t, raw_s),
            row(f"guided (scale {best_scale:g})", chain, q_guided, p_t, R_t, guided_s),
            row(f"raw + DLS x{args.refine_steps}", chain, q_raw_ref, p_t, R_t, raw_s + raw_ref_s),
            row(f"guided + DLS x{args.refine_steps}", chain, q_guided_ref, p_t, R_t, guided_s + guided_ref_s),
            row(f"random + DLS x{args.refine_steps}, best of {restarts}", chain, best, p_t, R_t, base_s)]
    print(f"# IK benchmark (Panda), anydiff {git_revision()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {model._device()}")
    print(f"# {args.train} training poses, {args.steps} steps of {args.batch}, MLP {args.hidden} x {args.depth}, "
          f"fit {fit_s:.0f} s; {args.targets} targets x {H} solutions, {args.sampling_steps} sampling steps")
    print("# guidance scale on " + f"{args.val_targets} validation targets (median mm): "
          + ", ".join(f"{s:g}: {m:.2f}" for m, s in sorted(val, key=lambda v: v[1])))
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
