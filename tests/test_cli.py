"""The anydiff command, in-process (main(argv)) and as a real process."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from anydiff.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--max-steps", "30", "--batch-size", "64", "--hidden", "16", "--depth", "1", "--sampling-steps", "4",
        "--quiet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    X = np.random.default_rng(0).normal(size=(200, 3)) * [1.0, 2.0, 0.5] + [0.0, 5.0, -1.0]
    np.savetxt(d / "data.csv", X, delimiter=",", header="a,b,c", comments="")
    np.save(d / "data.npy", X)
    assert main(["fit", str(d / "data.csv"), "-o", str(d / "model.anydiff"), *TINY]) == 0
    return d, X


def test_fit_sample_score_impute(files, capsys):
    d, X = files
    assert main(["sample", str(d / "model.anydiff"), "-n", "50", "-o", str(d / "s.npy"), "--seed", "1"]) == 0
    s = np.load(d / "s.npy")
    assert s.shape == (50, 3) and np.isfinite(s).all()
    assert main(["sample", str(d / "model.anydiff"), "-n", "50", "-o", str(d / "s2.csv"), "--seed", "1"]) == 0
    np.testing.assert_allclose(np.loadtxt(d / "s2.csv", delimiter=","), s, rtol=1e-9)
    assert main(["score", str(d / "model.anydiff"), str(d / "data.npy"), "-o", str(d / "ll.npy")]) == 0
    assert np.load(d / "ll.npy").shape == (200, 1)
    assert "mean log-likelihood" in capsys.readouterr().out
    holes = X[:10].copy()
    holes[::2, 1] = np.nan
    np.save(d / "holes.npy", holes)
    assert main(["impute", str(d / "model.anydiff"), str(d / "holes.npy"), "-o", str(d / "full.npy")]) == 0
    full = np.load(d / "full.npy")
    assert np.isfinite(full).all() and np.array_equal(full[~np.isnan(holes)], holes[~np.isnan(holes)])


def test_conditional_fit_and_sample(files, tmp_path):
    d, X = files
    np.save(tmp_path / "labels.npy", (X[:, 0] > 0).astype(np.int64))
    model = str(tmp_path / "cond.anydiff")
    assert main(["fit", str(d / "data.npy"), "-o", model, "--labels", str(tmp_path / "labels.npy"), *TINY]) == 0
    assert main(["sample", model, "-n", "8", "-o", str(tmp_path / "c.npy"), "--label", "1",
                 "--guidance-scale", "2"]) == 0
    assert np.load(tmp_path / "c.npy").shape == (8, 3)


@pytest.mark.parametrize("argv,needle", [
    (["fit", "/no/such.csv", "-o", "m"], "no such file"),
    (["fit", "data.txt", "-o", "m"], "unknown file type"),
    (["sample", "/no/model.anydiff", "-n", "3", "-o", "x.npy"], "no such model"),
    (["score", "BAD_MODEL", "data.npy"], "not an anydiff model"),
    (["sample", "MODEL", "-n", "3", "-o", "out.txt"], "unknown output type"),
    (["score", "MODEL", "PICKLE"], "cannot read"),
    (["score", "MODEL", "WIDE"], "features"),
    (["fit", "data.npy", "-o", "m", "--max-steps", "0"], "max_steps"),
    (["fit", "data.npy", "-o", "m", "--reference-batch", "-1"], "reference_batch"),
])
def test_errors_are_one_line(files, tmp_path, capsys, argv, needle):
    d, X = files
    (tmp_path / "data.txt").write_text("1,2\n")
    (tmp_path / "BAD_MODEL").write_bytes(b"not a model")
    np.save(tmp_path / "WIDE.npy", np.zeros((3, 5)))
    with open(tmp_path / "PICKLE.npy", "wb") as fh:
        pickle.dump({"a": 1}, fh)
    subst = {"MODEL": str(d / "model.anydiff"), "BAD_MODEL": str(tmp_path / "BAD_MODEL"),
             "PICKLE": str(tmp_path / "PICKLE.npy"), "WIDE": str(tmp_path / "WIDE.npy"),
             "data.npy": str(d / "data.npy"), "data.txt": str(tmp_path / "data.txt"),
             "m": str(tmp_path / "m.anydiff"), "x.npy": str(tmp_path / "x.npy"),
             "out.txt": str(tmp_path / "out.txt")}
    assert main([subst.get(a, a) for a in argv]) == 1
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_real_process_help_and_exit_codes():
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-m", "anydiff", "fit", "--help"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "--max-steps" in out.stdout and "--reference-batch" in out.stdout
    out = subprocess.run([sys.executable, "-m", "anydiff", "score", "/no/model", "/no/data.csv"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" not in out.stderr


def test_fit_under_torchrun(files, tmp_path):
    d, _ = files
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    model = tmp_path / "ddp.anydiff"
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "anydiff", "fit", str(d / "data.npy"), "-o", str(model), "--device", "cpu", *TINY],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert model.exists() and out.stdout.count("wrote") == 1  # rank 0 only
