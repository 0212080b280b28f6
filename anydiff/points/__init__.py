"""Point clouds: a diffusion estimator, procedural shapes, uniform sampling of meshes and metrics.

* :class:`PointCloudDiffusion` -- the estimator: ``fit`` clouds (optionally labelled), ``sample``
  any number of points, ``complete`` partial scans.
* :func:`make_shapes` -- labelled procedural shapes ("ProcShapes", ``SHAPE_CLASSES``), points
  uniform on each surface (``datasets/procshapes.md``).
* :func:`sample_surface` -- points uniform on a user's mesh (needs trimesh:
  ``pip install 'anydiff[points]'``, imported only when called).
* :mod:`anydiff.points.metrics` -- Chamfer distance, EMD, MMD, COV and 1-NNA as in PointFlow
  (Yang et al. 2019) and its successors.
"""
from . import metrics
from .estimator import PointCloudDiffusion
from .shapes import SHAPE_CLASSES, make_shapes, sample_surface

__all__ = ["PointCloudDiffusion", "make_shapes", "sample_surface", "SHAPE_CLASSES", "metrics"]
