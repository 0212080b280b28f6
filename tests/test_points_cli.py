"""The anydiff command on point clouds: ``fit`` on .npy / .npz clouds, ``sample`` and ``complete``
(in-process through ``main(argv)``, tiny models), and the one-line errors for bad files."""
import os
import subprocess
import sys

import numpy as np
import pytest

from anydiff.cli import build_parser, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--max-steps", "20", "--batch-size", "8", "--hidden", "16", "--depth", "1", "--heads", "2",
        "--sampling-steps", "4", "--quiet"]
FAST_COMPLETE = ["--steps", "8", "--resample", "2"]
CENTRE, SPREAD = np.array([10.0, -5.0, 3.0]), np.array([1.0, 2.0, 0.5])


def ragged(rng, sizes):
    return [rng.normal(size=(n, 3)) * SPREAD + CENTRE for n in sizes]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("points_cli")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 64, 3)) * SPREAD + CENTRE
    np.save(d / "clouds.npy", X)
    assert main(["fit", str(d / "clouds.npy"), "-o", str(d / "m.anydiff"), *TINY]) == 0
    clouds = ragged(rng, (40, 50, 64, 45, 52, 41))
    np.savez(d / "ragged.npz", *clouds, labels=np.array([0, 1, 0, 1, 0, 1]))
    assert main(["fit", str(d / "ragged.npz"), "-o", str(d / "cond.anydiff"), *TINY]) == 0
    np.save(d / "table.npy", rng.normal(size=(100, 2)))
    assert main(["fit", str(d / "table.npy"), "-o", str(d / "table.anydiff"), "--max-steps", "5", "--quiet"]) == 0
    return d, X, clouds


def one_line_error(capsys, needle: str, *names: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# -- fit and sample ------------------------------------------------------------------------------
def test_fit_npy_sample_shape_units_and_seed(files, tmp_path, capsys):
    d, X, _ = files
    out = tmp_path / "s.npy"
    assert main(["sample", str(d / "m.anydiff"), "-n", "5", "--n-points", "100", "-o", str(out), "--seed", "1"]) == 0
    s = np.load(out)
    assert s.shape == (5, 100, 3) and s.dtype == np.float64 and np.isfinite(s).all()
    # in the units of the training clouds (centred near (10, -5, 3), half-extents up to about 8), not
    # the model's normalized [-1, 1]: each sample takes a training cloud's centre and scale
    half = np.abs(X - CENTRE).max()
    assert np.abs(s.mean(axis=(0, 1)) - CENTRE).max() < 1.0 and np.abs(s - CENTRE).max() < 1.5 * half
    assert 0.3 < s.std() / X.std() < 3
    again = tmp_path / "again.npz"
    assert main(["sample", str(d / "m.anydiff"), "-n", "5", "--n-points", "100", "-o", str(again), "--seed", "1"]) == 0
    with np.load(again) as z:
        assert z.files == ["clouds"]
        np.testing.assert_array_equal(z["clouds"], s)  # same seed, same clouds; .npz under 'clouds'
    other = tmp_path / "other.npy"
    assert main(["sample", str(d / "m.anydiff"), "-n", "5", "--n-points", "100", "-o", str(other), "--seed", "2"]) == 0
    assert not np.array_equal(np.load(other), s)


def test_ragged_npz_with_labels_fits_a_conditional_model(files, tmp_path):
    d, _, clouds = files
    from anydiff import load

    est = load(d / "cond.anydiff")
    assert est.classes_.tolist() == [0, 1] and est.train_points_ == 40  # the smallest cloud
    out = tmp_path / "one.npz"
    assert main(["sample", str(d / "cond.anydiff"), "-n", "3", "--n-points", "30", "--label", "1",
                 "--guidance-scale", "2", "-o", str(out), "--seed", "0"]) == 0
    with np.load(out) as z:
        assert z["clouds"].shape == (3, 30, 3) and z["labels"].tolist() == [1, 1, 1]
    # the sampled file reads back as training data (a 3-D 'clouds' array and its 'labels')
    assert main(["fit", str(out), "-o", str(tmp_path / "again.anydiff"), *TINY]) == 0


def test_labels_from_a_separate_file(files, tmp_path):
    d, _, clouds = files
    np.savez(tmp_path / "plain.npz", *clouds)
    np.savetxt(tmp_path / "y.csv", ["a", "b", "a", "b", "a", "b"], fmt="%s")
    model = tmp_path / "m.anydiff"
    assert main(["fit", str(tmp_path / "plain.npz"), "--labels", str(tmp_path / "y.csv"), "-o", str(model), *TINY]) == 0
    out = tmp_path / "b.npy"
    assert main(["sample", str(model), "-n", "2", "--n-points", "16", "--label", "b", "-o", str(out)]) == 0
    assert np.load(out).shape == (2, 16, 3)


def test_options_pass_through(files, tmp_path, capsys):
    d, X, _ = files
    model = tmp_path / "m.anydiff"
    assert main(["fit", str(d / "clouds.npy"), "-o", str(model), *TINY, "--train-points", "32",
                 "--normalize", "global", "--max-steps", "7"]) == 0
    assert "trained a PointCloudDiffusion on 12 clouds" in capsys.readouterr().out
    from anydiff import load

    est = load(model)
    assert (est.train_points_, est.normalize, est.hidden, est.heads, est.n_iter_) == (32, "global", 16, 2, 7)


def test_latent_architecture_from_the_command_line(files, tmp_path, capsys):
    d, X, _ = files
    model = tmp_path / "m.anydiff"
    assert main(["fit", str(d / "clouds.npy"), "-o", str(model), *TINY, "--architecture", "latent",
                 "--latent-dim", "8", "--kl-weight", "0.01", "--max-steps", "5"]) == 0
    from anydiff import load

    est = load(model)
    assert (est.architecture, est.latent_dim, est.kl_weight) == ("latent", 8, 0.01)
    assert main(["sample", str(model), "-n", "2", "--n-points", "10", "-o", str(tmp_path / "s.npy"),
                 "--seed", "0"]) == 0
    assert np.load(tmp_path / "s.npy").shape == (2, 10, 3)


# -- complete -------------------------------------------------------------------------------------
def test_complete_keeps_the_observed_points(files, tmp_path, capsys):
    d, X, clouds = files
    scan = X[0][X[0][:, 2] > CENTRE[2]][:20]
    np.save(tmp_path / "scan.npy", scan)
    out = tmp_path / "done.npy"
    assert main(["complete", str(d / "m.anydiff"), str(tmp_path / "scan.npy"), "-o", str(out), "--n-points", "48",
                 "--seed", "0", *FAST_COMPLETE]) == 0
    done = np.load(out)
    assert done.shape == (48, 3) and np.isfinite(done).all()
    np.testing.assert_array_equal(done[:20], scan)
    assert "completed 1 cloud(s) to 48 points" in capsys.readouterr().out
    # several scans of different sizes, in an .npz, to an .npz
    scans = [c[:m] for c, m in zip(clouds, (10, 25, 7))]
    np.savez(tmp_path / "scans.npz", *scans)
    out = tmp_path / "done.npz"
    assert main(["complete", str(d / "cond.anydiff"), str(tmp_path / "scans.npz"), "-o", str(out),
                 "--n-points", "32", "--seed", "0", *FAST_COMPLETE]) == 0
    with np.load(out) as z:
        done = z["clouds"]
    assert done.shape == (3, 32, 3) and np.isfinite(done).all()
    for c, s in zip(done, scans):
        np.testing.assert_array_equal(c[:len(s)], s)


# -- errors ---------------------------------------------------------------------------------------
def _bad_files(d, t):
    rng = np.random.default_rng(1)
    np.save(t / "wide.npy", np.zeros((4, 10, 5)))
    nan = rng.normal(size=(4, 10, 3))
    nan[2, 3, 1] = np.nan
    np.save(t / "nan.npy", nan)
    np.savez(t / "inf.npz", rng.normal(size=(8, 3)), np.array([[0, 0, np.inf]] * 9))
    np.savez(t / "nothing.npz")
    (t / "zero.npz").write_bytes(b"")
    (t / "zero.npy").write_bytes(b"")
    np.savez(t / "short.npz", *ragged(rng, (9, 10, 11, 12)), labels=np.array([0, 1, 0]))
    np.save(t / "y3.npy", np.array([0, 1, 0]))
    np.savez(t / "objects.npz", clouds=np.array(ragged(rng, (9, 10)), dtype=object))
    np.savez(t / "mixed.npz", clouds=rng.normal(size=(3, 10, 3)), extra=rng.normal(size=(10, 3)))
    np.savez(t / "flat.npz", rng.normal(size=(10, 3)), rng.normal(size=(10, 2)))
    np.savez(t / "tiny.npz", rng.normal(size=(10, 3)), rng.normal(size=(1, 3)))
    np.savez(t / "labelled.npz", *ragged(rng, (9, 10)), labels=np.array([0, 1]))
    np.savez(t / "pair.npz", *ragged(rng, (9, 10)))
    np.savez(t / "nolabels.npz", *ragged(rng, (9, 10)), labels=np.array([0.0, np.nan]))
    np.save(t / "scan2d.npy", rng.normal(size=(10, 2)))
    np.save(t / "scan.npy", rng.normal(size=(30, 3)))


@pytest.mark.parametrize("argv,needle,names", [
    (["fit", "wide.npy", "-o", "m"], "the last axis must hold x, y, z", ["wide.npy", "(4, 10, 5)"]),
    (["fit", "nan.npy", "-o", "m"], "NaN or infinite", ["nan.npy", "cloud 2", "point 3"]),
    (["fit", "inf.npz", "-o", "m"], "NaN or infinite", ["inf.npz", "'arr_1'"]),
    (["fit", "nothing.npz", "-o", "m"], "holds no clouds", ["nothing.npz", "np.savez"]),
    (["fit", "zero.npz", "-o", "m"], "the file is empty", ["zero.npz"]),
    (["fit", "zero.npy", "-o", "m"], "the file is empty", ["zero.npy"]),
    (["fit", "short.npz", "-o", "m"], "3 label(s) for 4 clouds", ["short.npz", "'labels'"]),
    (["fit", "pair.npz", "--labels", "y3.npy", "-o", "m"], "3 label(s) for 2 clouds", ["y3.npy", "pair.npz"]),
    (["fit", "labelled.npz", "--labels", "y3.npy", "-o", "m"], "use one of them", ["labelled.npz"]),
    (["fit", "nolabels.npz", "-o", "m"], "has no label", ["nolabels.npz", "cloud 1"]),
    (["fit", "objects.npz", "-o", "m"], "pickled (object) array", ["objects.npz", "np.savez(f, *clouds)"]),
    (["fit", "mixed.npz", "-o", "m"], "other array", ["mixed.npz", "'clouds'"]),
    (["fit", "flat.npz", "-o", "m"], "each cloud is an (n_points, 3) array", ["flat.npz", "'arr_1'", "(10, 2)"]),
    (["fit", "tiny.npz", "-o", "m"], "at least 2", ["tiny.npz", "'arr_1'"]),
    (["fit", "clouds.npy", "-o", "m", "--fourier-features", "4"], "--fourier-features: not an option for point clouds",
     []),
    (["fit", "table.npy", "-o", "m", "--normalize", "box"], "--normalize: not an option for a numeric table", []),
    (["fit", "clouds.npy", "-o", "m", "--tabular"], "--tabular is for tables", ["clouds.npy"]),
    (["sample", "M", "-n", "2", "-o", "s.csv"], "point clouds are written as .npy", ["s.csv"]),
    (["sample", "M", "-n", "2", "-o", "s.npy", "--label", "1"], "fitted without labels", []),
    (["sample", "COND", "-n", "2", "-o", "s.npy", "--label", "7"], "not seen in fit", []),
    (["sample", "M", "-n", "2", "-o", "s.npy", "--condition", "a=1"], "--condition is for models of tables", []),
    (["sample", "TABLE", "-n", "2", "-o", "s.npy", "--n-points", "10"], "--n-points is for point-cloud models",
     ["table.anydiff"]),
    (["complete", "TABLE", "scan.npy", "-o", "s.npy"], "complete needs a PointCloudDiffusion", ["table.anydiff"]),
    (["complete", "M", "scan.npy", "-o", "s.csv"], "point clouds are written as .npy", ["s.csv"]),
    (["complete", "M", "scan.npy", "-o", "s.npy", "--n-points", "30"], "leaves nothing to complete", []),
    (["complete", "M", "scan2d.npy", "-o", "s.npy"], "(n_points, 3)", ["scan2d.npy", "(10, 2)"]),
    (["complete", "M", "scan.txt", "-o", "s.npy"], "unknown file type", ["scan.txt"]),
    (["impute", "M", "table.npy", "-o", "s.npy"], "anydiff complete", ["m.anydiff"]),
])
def test_bad_input_is_one_line_naming_the_file(files, tmp_path, capsys, argv, needle, names):
    d, _, _ = files
    _bad_files(d, tmp_path)
    subst = {"M": str(d / "m.anydiff"), "COND": str(d / "cond.anydiff"), "TABLE": str(d / "table.anydiff"),
             "clouds.npy": str(d / "clouds.npy"), "table.npy": str(d / "table.npy"), "m": str(tmp_path / "m.anydiff")}
    argv = [subst.get(a, str(tmp_path / a) if "." in a and not a.startswith("-") else a) for a in argv]
    capsys.readouterr()
    assert main(argv) == 1
    one_line_error(capsys, needle, *names)
    assert not (tmp_path / "m.anydiff").exists() and not (tmp_path / "s.npy").exists()


def test_labels_in_a_scan_file_are_a_warning(files, tmp_path, capsys):
    d, _, clouds = files
    np.savez(tmp_path / "scans.npz", clouds[0][:10], labels=np.array([1]))
    assert main(["complete", str(d / "cond.anydiff"), str(tmp_path / "scans.npz"), "-o", str(tmp_path / "o.npy"),
                 "--n-points", "16", *FAST_COMPLETE]) == 0
    assert "'labels' is not used" in capsys.readouterr().err
    assert np.load(tmp_path / "o.npy").shape == (1, 16, 3)


def test_help_names_the_point_cloud_options():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices
    text = " ".join(sub["fit"].format_help().split())
    for flag in ("--normalize", "--train-points", "--heads", "--architecture", "--latent-dim", "--kl-weight"):
        assert flag in text
    assert "get a PointCloudDiffusion; its defaults differ: batch_size=32" in text
    assert "--n-points" in sub["sample"].format_help() and "--resample" in sub["complete"].format_help()


def test_a_real_process_reports_a_bad_cloud_file_in_one_line(tmp_path):
    np.save(tmp_path / "wide.npy", np.zeros((2, 5, 4)))
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "anydiff", "fit", "wide.npy", "-o", "m.anydiff"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "anydiff fit: error: wide.npy: a 3-D array is read as point clouds (n_clouds, n_points, 3), but its "
        "shape is (2, 5, 4); the last axis must hold x, y, z"]
