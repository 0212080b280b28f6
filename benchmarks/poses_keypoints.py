"""Object pose from 2-D keypoints: PoseDiffusion against OpenCV PnP and a regression network, for an
asymmetric object and a symmetric one.

Data (``ad.poses.camera.make_keypoint_views``): Haar-uniform rotations, the object 4-8 m in front
of a 640 x 480 camera (focal 600 px), keypoints with ``--noise`` px Gaussian noise, each occluded
with probability ``--occlusion``. Objects: ``box`` (8 labelled corners of a 1 x 0.6 x 0.3 box, no
symmetry) and ``frustum`` (a square frustum whose corners are unlabelled within each square: the
observation of R and R S is identical for S in C4 about z, so the answer is the set {R S}; the
training rotation is a uniformly random member of it). Pose = ``rotation`` (matrix) +
``translation``; condition = ``keypoints`` + ``visible``.

Methods (one training set of ``--train`` views per object; ``--views`` fresh test views):

* ``PoseDiffusion``: ``--hypotheses`` samples per view, ``raw`` and ``guided`` by the
  reprojection error (``ad.poses.camera.reprojection_error``, symmetric-aware for the frustum),
  the guidance scale picked among ``--scales`` on ``--val-views`` separate views (by the median
  rotation error of the hypotheses, modulo the symmetry). One estimate per view by
  ``ad.poses.aggregate``: chordal mean, geodesic median, medoid.
* ``regression``: a ResidualMLP of the same width and depth (fed zeros and t = 0, the condition
  through the same FiLM path) trained to predict the standardized 6-D rotation + translation
  (MSE), as many steps with the same batch and peak learning rate (AdamW, warm-up, cosine decay).
* ``cv2.solvePnP`` (SQPnP, Terzakis & Lourakis 2020, then Levenberg-Marquardt refinement) on the
  visible keypoints; a view with fewer than 4 visible keypoints, or a solution behind the camera,
  is a failure (its rows are computed on the solved views only). For the frustum the keypoints
  are unlabelled: PnP is run for every cyclic relabelling of each square in both directions (64
  correspondence hypotheses) and the one with the smallest reprojection error is kept.

Reported: the rotation error (deg) of the estimate -- for the frustum both modulo the symmetry
(``symmetric_rotation_error_deg``, the honest score) and plain, to the drawn rotation -- the share
of views within 15 deg, and the translation error (cm). For the hypotheses: coverage (the share of
the true poses {R S} with a hypothesis within 15 deg, ``mode_coverage`` per view, averaged),
precision (the share of hypotheses within 15 deg of one of them), and the best-of-H **oracle** (the
hypothesis closest to the drawn truth, modulo the symmetry: a bound that looks at the answer, not
an accuracy).

Run: ``python benchmarks/poses_keypoints.py`` (defaults: 30k views, 2000 steps of 512, MLP 256 x 4,
both objects; about 11 min on an idle CPU core, 16 min measured with the machine's two cores shared
with another job; PnP with 64 relabellings takes 30 s of it) or ``--quick`` for a smoke run
(about 20 s).
"""
from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np
import torch

import anydiff as ad
from _common import git_revision
from anydiff.poses import camera as cam

M = ad.poses.metrics
THRESH = 15.0


def tensor(ds, name):
    return torch.from_numpy(np.ascontiguousarray(ds[name].values))


# -- the regression baseline -------------------------------------------------------------------------
def fit_regression(model, pose, cond, args):
    """A ResidualMLP of the diffusion model's size mapping the condition to the standardized pose."""
    Y = torch.from_numpy(model.encoder_.encode(pose)).float()
    C = torch.from_numpy(model.cond_encoder_.encode(cond)).float()
    torch.manual_seed(args.seed)
    net = ad.nn.ResidualMLP(Y.shape[1], hidden=args.hidden, depth=args.depth, cond_dim=C.shape[1])
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr)
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / max(1, args.steps)))))
    gen = torch.Generator().manual_seed(args.seed)
    for _ in range(args.steps):
        idx = torch.randint(len(Y), (args.batch,), generator=gen)
        pred = net(torch.zeros(args.batch, Y.shape[1]), torch.zeros(args.batch), C[idx])
        loss = (pred - Y[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    def predict(cond_ds):
        c = torch.from_numpy(model.cond_encoder_.encode(cond_ds)).float()
        with torch.no_grad():
            out = model.encoder_.decode(net(torch.zeros(len(c), Y.shape[1]), torch.zeros(len(c)), c).double())
        return out["rotation"], out["translation"]
    return predict


# -- the PnP baseline --------------------------------------------------------------------------------
def correspondences(X, G):
    """Candidate model-point orders for the slots: the identity for a labelled object; for a
    symmetric one every cyclic shift and direction of each orbit (ordered by angle about z)."""
    orbits = cam.symmetry_orbits(X, G)
    per_orbit = []
    for orbit in orbits:
        o = sorted(orbit, key=lambda i: math.atan2(float(X[i, 1]), float(X[i, 0])))
        n = len(o)
        per_orbit.append([(sorted(orbit), [o[(d * j + k) % n] for j in range(n)]) for d in (1, -1) for k in range(n)]
                         if n > 1 else [(orbit, orbit)])
    cands = []
    for combo in itertools.product(*per_orbit):
        order = list(range(len(X)))
        for slots, model_idx in combo:
            for s, m in zip(slots, model_idx):
                order[s] = m
        cands.append(order)
    return cands


def solve_pnp(X, G, K, kp, vis):
    import cv2

    Xn, Kn = X.numpy(), K.numpy()
    cands = correspondences(X, G)
    Rs, ts, ok = [], [], []
    for i in range(len(kp)):
        v = vis[i] > 0.5
        best = (np.inf, None, None)
        if v.sum() >= 4:
            for order in cands:
                obj = Xn[order][v]
                img = kp[i][v].numpy()
                try:
                    good, rvec, tvec = cv2.solvePnP(obj, img, Kn, None, flags=cv2.SOLVEPNP_SQPNP)
                    if good:
                        rvec, tvec = cv2.solvePnPRefineLM(obj, img, Kn, None, rvec, tvec)
                except cv2.error:
                    good = False
                if not good or tvec[2, 0] <= 0:
                    continue
                R = torch.from_numpy(cv2.Rodrigues(rvec)[0])
                t = torch.from_numpy(tvec[:, 0])
                e = float(cam.reprojection_error(X, R, t, K, kp[i], vis[i], symmetries=G))
                if e < best[0]:
                    best = (e, R, t)
        ok.append(best[1] is not None)
        Rs.append(best[1] if best[1] is not None else torch.eye(3, dtype=torch.float64))
        ts.append(best[2] if best[2] is not None else torch.zeros(3, dtype=torch.float64))
    return torch.stack(Rs), torch.stack(ts), torch.tensor(ok)


# -- metrics -----------------------------------------------------------------------------------------
def rot_errors(R, R_true, G):
    plain = M.rotation_error_deg(R, R_true)
    sym = plain if G is None else M.symmetric_rotation_error_deg(R, R_true, G)
    return sym, plain


def estimate_row(name, R, t, R_true, t_true, G, mask=None, note=""):
    sym, plain = rot_errors(R, R_true, G)
    terr = (t - t_true).norm(dim=-1) * 100
    if mask is not None:
        sym, plain, terr = sym[mask], plain[mask], terr[mask]
    cells = [name, f"{sym.median():.2f}", f"{sym.mean():.2f}", f"{100 * (sym < THRESH).double().mean():.1f}"]
    if G is not None:
        cells += [f"{plain.median():.2f}", f"{plain.mean():.2f}"]
    return cells + [f"{terr.median():.2f}", note]


def hypothesis_row(name, R_h, R_true, G, seconds):
    n, H = R_h.shape[:2]
    modes = R_true[:, None] if G is None else R_true[:, None] @ G  # (n, S, 3, 3)
    cov, prec = [], []
    for i in range(n):
        c = M.mode_coverage(R_h[i], modes[i], threshold_deg=THRESH)
        cov.append(c["coverage"])
        prec.append(c["precision"])
    dist = (lambda a, b: torch.deg2rad(M.symmetric_rotation_error_deg(a, b, G))) if G is not None else "geodesic"
    _, best = M.best_of_hypotheses_oracle(R_h, R_true, dist, dim=1)
    best = torch.rad2deg(best)
    sym, _ = rot_errors(R_h, R_true[:, None], G)
    return [name, f"{np.mean(cov):.3f}", f"{np.mean(prec):.3f}", f"{best.median():.2f}", f"{sym.median():.2f}",
            f"{1000 * seconds / (n * H):.2f}"]


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def run_object(name, args, gen):
    X, G = cam.OBJECTS[name], cam.SYMMETRIES[name]
    K = cam.default_intrinsics()
    views = lambda n: cam.make_keypoint_views(n, X, K=K, symmetries=G, noise_px=args.noise,  # noqa: E731
                                              occlusion=args.occlusion, generator=gen)
    pose, cond = views(args.train)
    model = ad.PoseDiffusion(max_steps=args.steps, batch_size=args.batch, learning_rate=args.lr, hidden=args.hidden,
                             depth=args.depth, sampling_steps=args.sampling_steps, device=args.device,
                             random_state=args.seed)
    t0 = time.perf_counter()
    model.fit(pose, cond)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    regress = fit_regression(model, pose, cond, args)
    reg_fit_s = time.perf_counter() - t0

    def energy(p, c):
        return cam.reprojection_error(X, p["rotation"], p["translation"], K, c["keypoints"], c["visible"],
                                      symmetries=G)

    H = args.hypotheses

    def draw(cond_ds, scale):
        t0 = time.perf_counter()
        ds = model.sample(cond=cond_ds, n_hypotheses=H, random_state=args.seed,
                          guidance=energy if scale > 0 else None, guidance_scale=scale)
        return ds, time.perf_counter() - t0

    # the guidance scale, on separate views
    vpose, vcond = views(args.val_views)
    val = []
    for s in [float(x) for x in args.scales.split(",")]:
        ds, _ = draw(vcond, s)
        sym, _ = rot_errors(tensor(ds, "rotation"), tensor(vpose, "rotation")[:, None], G)
        val.append((float(sym.median()), s))
    scale = min(val)[1]

    tpose, tcond = views(args.views)
    R_true, t_true = tensor(tpose, "rotation"), tensor(tpose, "translation")
    est_rows, hyp_rows = [], []
    for label, s in [("raw", 0.0), (f"guided ({scale:g})", scale)]:
        ds, sec = draw(tcond, s)
        hyp_rows.append(hypothesis_row(f"PoseDiffusion {label}", tensor(ds, "rotation"), R_true, G, sec))
        for method in ("mean", "median", "medoid"):
            agg = ad.poses.aggregate(ds, method)
            est_rows.append(estimate_row(f"PoseDiffusion {label}, {method}", tensor(agg, "rotation"),
                                         tensor(agg, "translation"), R_true, t_true, G))
    R_reg, t_reg = regress(tcond)
    est_rows.append(estimate_row("regression (same MLP)", R_reg, t_reg, R_true, t_true, G))
    t0 = time.perf_counter()
    R_pnp, t_pnp, ok = solve_pnp(X, G, K, tensor(tcond, "keypoints"), tensor(tcond, "visible"))
    pnp_s = time.perf_counter() - t0
    est_rows.append(estimate_row("cv2.solvePnP (SQPnP + LM)" + (", 64 relabellings" if G is not None else ""),
                                 R_pnp, t_pnp, R_true, t_true, G, mask=ok,
                                 note=f"{int((~ok).sum())} failures of {len(ok)} ({pnp_s:.1f} s)"))

    sym_label = "C4 about z" if G is not None else "none"
    print(f"\n## {name} ({len(X)} keypoints, symmetry: {sym_label})")
    print(f"# anydiff {git_revision()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {model._device()}")
    print(f"# {args.train} training views, {args.steps} steps of {args.batch}, lr {args.lr:g}, MLP {args.hidden} x "
          f"{args.depth}; PoseDiffusion fit {fit_s:.0f} s, regression fit {reg_fit_s:.0f} s; noise {args.noise:g} px, "
          f"occlusion {args.occlusion:g}; {args.views} test views x {H} hypotheses, "
          f"{args.sampling_steps} sampling steps")
    print(f"# guidance scale on {args.val_views} validation views (median hypothesis rotation error, deg): "
          + ", ".join(f"{s:g}: {m:.2f}" for m, s in sorted(val, key=lambda v: v[1])))
    rot_label = "rot err mod C4" if G is not None else "rot err"
    header = ["estimate", f"{rot_label} median (deg)", f"{rot_label} mean (deg)", f"% < {THRESH:g} deg"]
    if G is not None:
        header += ["plain rot err median (deg)", "plain rot err mean (deg)"]
    table(header + ["trans err median (cm)", "note"], est_rows)
    print()
    table(["hypotheses", f"coverage of {{R S}} @ {THRESH:g} deg" if G is not None else f"coverage @ {THRESH:g} deg",
           "precision", f"best-of-{H} ORACLE median (deg)", "per-hypothesis rot err median (deg)",
           "ms per hypothesis"], hyp_rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", default="box,frustum")
    ap.add_argument("--train", type=int, default=30_000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--sampling-steps", type=int, default=20)
    ap.add_argument("--views", type=int, default=200)
    ap.add_argument("--val-views", type=int, default=40)
    ap.add_argument("--hypotheses", type=int, default=16)
    ap.add_argument("--noise", type=float, default=1.0, help="pixels")
    ap.add_argument("--occlusion", type=float, default=0.2)
    ap.add_argument("--scales", default="0,1e-3,3e-3,1e-2,3e-2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 3k views, 100 steps, 30 test views")
    args = ap.parse_args(argv)
    if args.quick:
        args.train, args.steps, args.views, args.val_views, args.hidden, args.depth = 3000, 100, 30, 10, 64, 2
    print(f"# Object pose from keypoints: {args.objects}")
    for name in args.objects.split(","):
        if name not in cam.OBJECTS:
            raise SystemExit(f"--objects: unknown object {name!r}; choose from {sorted(cam.OBJECTS)}")
        run_object(name, args, torch.Generator().manual_seed(args.seed))


if __name__ == "__main__":
    main()
