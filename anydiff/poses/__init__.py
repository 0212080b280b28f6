"""Poses: rotations, joint angles and positions in xarray; kinematic chains, inverse kinematics and a
diffusion estimator that proposes many plausible poses for an ambiguous input.

* :class:`PoseDiffusion` -- the estimator: ``fit(ds, cond)`` on an ``xarray.Dataset`` whose variables
  carry ``attrs["kind"]``; ``sample(cond=..., n_hypotheses=H, guidance=energy)``.
* :func:`aggregate` -- hypotheses -> one pose per sample (chordal mean, medians, medoid).
* :mod:`anydiff.poses.rotations` -- quaternions (w, x, y, z), matrices, the 6-D representation,
  geodesic distances, chordal means, symmetry groups (through roma).
* :mod:`anydiff.poses.kinematics` -- :class:`KinematicChain` (modified DH or URDF through
  pytorch-kinematics), :func:`panda`, :func:`refine_ik` (damped least squares).
* :mod:`anydiff.poses.metrics` -- rotation errors, aggregation, geodesic MMD, mode coverage and the
  best-of-H oracle.
* :mod:`anydiff.poses.camera` -- pinhole projection, the reprojection error (a guidance energy),
  synthetic keypoint views of known objects, symmetric ones included.

Needs ``pip install 'anydiff[poses]'`` (xarray, roma, pytorch-kinematics); ``import anydiff`` does
not load them.
"""
from . import camera, kinematics, metrics, rotations
from .estimator import PoseDiffusion, aggregate
from .kinematics import KinematicChain, panda, refine_ik

__all__ = ["PoseDiffusion", "aggregate", "KinematicChain", "panda", "refine_ik", "camera", "kinematics", "metrics",
           "rotations"]
