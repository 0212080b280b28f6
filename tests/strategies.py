"""Hypothesis strategies and small numpy helpers shared by the property tests."""
import numpy as np
import torch
from hypothesis import strategies as st

import anydiff as ad

KINDS = ["linear", "cosine", "sigmoid"]
EVENTS = [(3,), (4, 3), (2, 5)]  # (B, D) vectors, (B, N, 3) point sets, (B, J, C) poses
DTYPES = [torch.float32, torch.float64]


def build(kind, T, ztsnr):
    if kind == "linear":
        return ad.schedules.linear(T, 1e-4, 0.02, zero_terminal_snr=ztsnr)
    if kind == "cosine":
        return ad.schedules.cosine(T, s=0.008, zero_terminal_snr=ztsnr)
    return ad.schedules.sigmoid(T, zero_terminal_snr=ztsnr)


@st.composite
def schedule_specs(draw, min_T=1, ztsnr=None, kinds=KINDS):
    """(kind, T, zero_terminal_snr, schedule) over the three constructors, small and large T."""
    kind = draw(st.sampled_from(kinds))
    T = draw(st.one_of(st.integers(min_T, 10), st.sampled_from([max(min_T, 37), 1000])))
    z = (T >= 2 and draw(st.booleans())) if ztsnr is None else ztsnr
    return kind, T, z, build(kind, T, z)


def schedules(min_T=1, ztsnr=None, kinds=KINDS):
    return schedule_specs(min_T, ztsnr, kinds).map(lambda spec: spec[3])


def bcast(c, ndim):
    """A per-sample coefficient (B,) reshaped to broadcast against (B, *event)."""
    c = np.asarray(c, dtype=np.float64)
    return c.reshape(c.shape + (1,) * (ndim - c.ndim))
