"""Tables: :class:`TabularDiffusion`, the column encoder and table-quality metrics.

``anydiff.tabular.metrics`` needs sdmetrics for its column-shape and pair-trend scores
(``pip install 'anydiff[tabular]'``); the estimator and the encoder need only pandas.
"""
from .encoders import TableEncoder
from .estimator import TabularDiffusion

__all__ = ["TabularDiffusion", "TableEncoder"]
