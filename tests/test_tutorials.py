"""Execute every notebook under tutorials/ in a fresh kernel, in quick mode.

The notebooks read ``ANYDIFF_TUTORIAL_QUICK=1`` and shrink every size, so each runs in seconds on
a CPU. The kernel inherits this process's environment: the test sets the quick flag and puts the
repository root first on PYTHONPATH, so that the notebook imports this checkout of anydiff.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "tutorials").glob("*.ipynb"))
CELL_TIMEOUT_S = 300


def test_tutorials_exist():
    assert NOTEBOOKS, f"no notebooks found under {ROOT / 'tutorials'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_tutorial_runs(path: Path, tmp_path, monkeypatch):
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("ANYDIFF_TUTORIAL_QUICK", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "Agg")  # no display; %matplotlib inline still captures figures
    # The tutorials train small MLPs on 2-D data, which gain nothing from intra-op threads; with
    # OpenMP threads on a busy machine (other jobs on the same 2 cores) torch ran them ~100x
    # slower (spin-waiting threads), so the kernel uses one thread.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(tmp_path)}})
    failure = None
    try:
        client.execute()
    except CellExecutionError as exc:  # its message holds the failing cell's source and traceback
        failure = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # without the terminal colours
    if failure is not None:
        pytest.fail(f"{path.name} failed:\n{failure}", pytrace=False)
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
