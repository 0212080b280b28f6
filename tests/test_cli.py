"""The anydiff command, in-process (main(argv)) and as a real process.

The real-process tests drive each finding of the command-line review through ``python -m anydiff``:
exit status, the one-line message, and the files left behind, byte for byte.
"""
import os
import pickle
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from anydiff.cli import ESTIMATOR_HELP, TABULAR_HELP, main
from anydiff.estimators import VectorDiffusion

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--max-steps", "30", "--batch-size", "64", "--hidden", "16", "--depth", "1", "--sampling-steps", "4",
        "--quiet"]
ENV = {**{k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")},
       "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    X = np.random.default_rng(0).normal(size=(200, 3)) * [1.0, 2.0, 0.5] + [0.0, 5.0, -1.0]
    np.savetxt(d / "data.csv", X, delimiter=",", header="a,b,c", comments="")
    np.save(d / "data.npy", X)
    assert main(["fit", str(d / "data.csv"), "-o", str(d / "model.anydiff"), *TINY]) == 0
    np.save(d / "plain.npy", X[:, :2])
    assert main(["fit", str(d / "plain.npy"), "-o", str(d / "plain.anydiff"), *TINY]) == 0
    return d, X


def run(*args, cwd, env=None, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anydiff", *map(str, args)], cwd=cwd, env=env or ENV,
                          capture_output=True, text=True, timeout=300, preexec_fn=preexec_fn)


def listing(folder) -> dict:
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_error(out, needle: str, code: int = 1) -> None:
    assert out.returncode == code, (out.returncode, out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert needle in lines[0], lines[0]


# -- in-process ----------------------------------------------------------------------------------
def test_fit_sample_score_impute(files, capsys):
    d, X = files
    assert main(["sample", str(d / "model.anydiff"), "-n", "50", "-o", str(d / "s.npy"), "--seed", "1"]) == 0
    s = np.load(d / "s.npy")
    assert s.shape == (50, 3) and np.isfinite(s).all()
    assert main(["sample", str(d / "model.anydiff"), "-n", "50", "-o", str(d / "s2.csv"), "--seed", "1"]) == 0
    assert (d / "s2.csv").read_text().splitlines()[0] == "a,b,c"  # the training header
    np.testing.assert_array_equal(np.loadtxt(d / "s2.csv", delimiter=",", skiprows=1), s)  # repr: exact
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
    (["sample", "MODEL", "-n", "3", "-o", "out.txt"], "unknown file type"),
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


def test_every_estimator_parameter_is_an_option():
    from anydiff.tabular import TabularDiffusion

    vector = set(VectorDiffusion().get_params()) - {"random_state", "verbose"}  # --seed, --quiet
    table = set(TabularDiffusion().get_params()) - {"random_state", "verbose"}
    assert set(ESTIMATOR_HELP) == vector and set(TABULAR_HELP) == table - vector
    out = subprocess.run([sys.executable, "-m", "anydiff", "fit", "--help"], env=ENV, capture_output=True, text=True)
    assert out.returncode == 0
    for name in vector | table:
        assert "--" + name.replace("_", "-") in out.stdout, name
    assert "--no-clip" in out.stdout and "(default: 5000; tables: auto)" in " ".join(out.stdout.split())


# -- real processes: reading -----------------------------------------------------------------------
def test_text_cells_are_an_error_naming_file_line_and_column(files, tmp_path):
    d, _ = files
    (tmp_path / "t.csv").write_text("a,b,c\n1,2,3\n4,Adelie,6\n")
    before = listing(tmp_path)
    out = run("impute", d / "model.anydiff", "t.csv", "-o", "out.csv", cwd=tmp_path)
    assert_one_line_error(out, "t.csv, line 3, column 2 ('b'): 'Adelie' is not a number")
    assert listing(tmp_path) == before


@pytest.mark.parametrize("text,rows", [
    ('"a","b","c"\n"1.5","2","3"\n"4","5","6"\n', 2),   # quoted numbers, as spreadsheets export
    ("a;b;c\n1.5;2;3\n4;5;6\n", 2),                       # ';'-separated
    ("a,b,c\n1.5,2,3\n", 1),                               # one row under a header
    ("a,b,c\n1.5,2,3,\n4,5,6,\n", 2),                     # a separator ending every row
    ("1.5\t2\t3\n4\t5\t6\n7\t8\t9\n", 3),                 # tabs, no header
])
def test_csv_dialects_are_read_as_numbers(files, tmp_path, text, rows):
    d, _ = files
    (tmp_path / "in.csv").write_text(text)
    out = run("score", d / "model.anydiff", "in.csv", "-o", "ll.npy", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"over {rows} rows" in out.stdout
    ll = np.load(tmp_path / "ll.npy")
    assert ll.shape == (rows, 1) and np.isfinite(ll).all()


@pytest.mark.parametrize("text,needle", [
    ("", "the file is empty"),
    ("a,b,c\n1,2,3\n4,5\n", "line 3: 2 fields, but the header has 3"),
    ("a,b,c\n", "header line but no data rows"),
])
def test_broken_csv_files_are_one_line_errors(files, tmp_path, text, needle):
    (tmp_path / "in.csv").write_text(text)
    out = run("fit", "in.csv", "-o", "m.anydiff", cwd=tmp_path)
    assert_one_line_error(out, needle)
    assert listing(tmp_path) == {"in.csv": text.encode()}


# -- real processes: writing ------------------------------------------------------------------------
def test_impute_writes_observed_cells_back_exactly(tmp_path):
    """Epoch-millisecond timestamps and short decimals come back as the text they were."""
    rng = np.random.default_rng(0)
    lines = ["time_ms,value,flag"]
    for i in range(150):
        lines.append(f"{1638316800123 + 997 * i},{rng.normal():.3f},{i % 2}")
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    assert run("fit", "train.csv", "-o", "m.anydiff", *TINY, cwd=tmp_path).returncode == 0
    holes = lines[:1] + [lines[1], "1638316801120,,1", ",0.5,0", lines[4], "1638316804111,NA,"]
    (tmp_path / "holes.csv").write_text("\n".join(holes) + "\n")
    out = run("impute", "m.anydiff", "holes.csv", "-o", "filled.csv", "--seed", "0", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "filled 4 missing entries" in out.stdout
    got = (tmp_path / "filled.csv").read_text().splitlines()
    assert got[0] == holes[0] and got[1] == holes[1] and got[4] == holes[4]  # untouched rows, byte for byte
    for want, row in zip(holes[2:], got[2:]):
        for w, g in zip(want.split(","), row.split(",")):
            if w in ("", "NA"):
                assert np.isfinite(float(g))
            else:
                assert g == w


def test_upper_case_npy_output_keeps_its_name(files, tmp_path):
    d, _ = files
    out = run("sample", d / "model.anydiff", "-n", "4", "-o", "UP.NPY", "--seed", "0", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(listing(tmp_path)) == ["UP.NPY"] and np.load(tmp_path / "UP.NPY").shape == (4, 3)


def test_a_failed_write_leaves_the_old_file_untouched(files, tmp_path):
    """A file-size limit stops the write part way: the existing output stays as it was."""
    d, _ = files
    (tmp_path / "s.csv").write_bytes(b"old,contents\n1,2\n")
    before = listing(tmp_path)
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))  # noqa: E731
    out = run("sample", d / "model.anydiff", "-n", "5000", "-o", "s.csv", cwd=tmp_path, preexec_fn=limit)
    assert_one_line_error(out, "File too large")
    assert listing(tmp_path) == before  # no truncated output, no temporary file


def test_output_paths_are_checked_before_training(files, tmp_path):
    d, _ = files
    out = run("fit", d / "data.csv", "-o", "missing_dir/m.anydiff", "--max-steps", "100000", cwd=tmp_path)
    assert_one_line_error(out, "missing_dir/m.anydiff: the folder")
    assert out.stdout == "" and listing(tmp_path) == {}
    out = run("sample", d / "model.anydiff", "-n", "3", "-o", "missing_dir/s.csv", cwd=tmp_path)
    assert_one_line_error(out, "does not exist")


# -- real processes: one-line errors -----------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_cuda_on_a_cpu_only_torch(files, tmp_path):
    d, _ = files
    out = run("fit", d / "data.csv", "-o", "m.anydiff", "--device", "cuda", *TINY, cwd=tmp_path)
    assert_one_line_error(out, "no usable CUDA device; use device='cpu' or 'auto'")
    assert listing(tmp_path) == {}


def test_a_diverged_run(files, tmp_path):
    d, _ = files
    out = run("fit", d / "data.csv", "-o", "m.anydiff", "--learning-rate", "1e6", *TINY, cwd=tmp_path)
    assert_one_line_error(out, "became NaN or infinite")
    assert listing(tmp_path) == {}


def wait_for_library(pid: int, name: str, timeout: float = 60.0) -> None:
    """Wait until process ``pid`` has mapped a shared library whose path contains ``name``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/maps") as fh:
            if name in fh.read():
                return
        time.sleep(0.005)
    raise AssertionError(f"the process never loaded {name}")


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc to know what the process is doing")
@pytest.mark.parametrize("library,delay", [("_multiarray_umath", 0.0), ("libtorch_cpu", 0.0),
                                           ("libtorch_cpu", 0.5), ("libtorch_cpu", 3.0)])
def test_ctrl_c_at_any_moment(files, tmp_path, library, delay):
    """Ctrl-C while numpy's C extension initialises (numpy turns the KeyboardInterrupt into an
    ImportError that does not chain it), while torch loads, right after, and while training: one
    line, exit 130. (Before the interpreter has run any of anydiff, a Ctrl-C is Python's own
    business.)

    Python may end the process by the signal itself (-SIGINT here, 130 in a shell) when the
    interrupt passed through code that a C extension ran (PyRun_*) while importing; both are an
    interrupted exit."""
    d, _ = files
    # As in a terminal: a shell that starts a job in the background without job control (CI
    # runners may) hands it SIGINT ignored, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "anydiff", "fit", str(d / "data.csv"), "-o", "m.anydiff",
                             "--max-steps", "1000000", "--quiet"], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for_library(proc.pid, library)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode in (130, -signal.SIGINT), stderr
    assert stderr.strip() in ("anydiff: interrupted", "anydiff fit: interrupted"), stderr
    assert listing(tmp_path) == {}


def test_an_interrupt_wrapped_by_a_library_is_still_an_interrupt(monkeypatch, capsys):
    """numpy turns Ctrl-C during its import into an ImportError with long advice (seen once in
    the test above); the command still reports an interrupt."""
    import anydiff.cli as cli

    def interrupted_import(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("IMPORTANT: PLEASE READ THIS FOR ADVICE ON HOW TO SOLVE THIS ISSUE!") from None

    monkeypatch.setattr(cli, "cmd_samplers", interrupted_import)
    assert cli.main(["samplers"]) == 130
    assert capsys.readouterr().err == "anydiff samplers: interrupted\n"


def test_an_interrupt_a_library_swallows_is_still_an_interrupt(monkeypatch, capsys):
    """numpy, interrupted while its C extension initialises, raises an ImportError that carries
    no trace of the KeyboardInterrupt: the command remembers the signal itself. (Python's own
    SIGINT handling for the test, as in a terminal: a runner may start jobs with SIGINT ignored.)"""
    import anydiff.cli as cli

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def swallowing_import(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises KeyboardInterrupt here
        except KeyboardInterrupt:
            pass
        raise ImportError("IMPORTANT: PLEASE READ THIS FOR ADVICE ON HOW TO SOLVE THIS ISSUE!")

    monkeypatch.setattr(cli, "cmd_samplers", swallowing_import)
    try:
        assert cli.main(["samplers"]) == 130
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().err == "anydiff samplers: interrupted\n"


def test_a_model_saved_for_a_gpu_samples_on_the_cpu(files, tmp_path):
    d, _ = files
    from anydiff.io import load

    est = load(d / "model.anydiff").set_params(device="cuda")
    est.save(tmp_path / "gpu.anydiff")
    out = run("sample", "gpu.anydiff", "-n", "3", "-o", "s.npy", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    if not torch.cuda.is_available():
        assert out.stderr.strip() == "anydiff: warning: device='cuda' is not available here; using the CPU"
    assert np.load(tmp_path / "s.npy").shape == (3, 3)


def test_fit_under_torchrun_with_an_odd_number_of_rows(files, tmp_path):
    """177 rows and the default batch: the batch is made to split over 2 ranks."""
    d, X = files
    np.save(tmp_path / "odd.npy", X[:177])
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "anydiff", "fit", "odd.npy", "-o", "ddp.anydiff", "--device", "cpu",
                          "--max-steps", "30", "--hidden", "16", "--depth", "1", "--quiet"],
                         cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "ddp.anydiff").exists() and out.stdout.count("wrote") == 1  # rank 0 only


# -- real processes: smaller findings ---------------------------------------------------------------
def test_text_labels_and_continuous_labels(files, tmp_path):
    d, X = files
    (tmp_path / "species.csv").write_text("\n".join(np.where(X[:, 0] > 0, "Adelie", "Gentoo")) + "\n")
    out = run("fit", d / "data.npy", "-o", "m.anydiff", "--labels", "species.csv", *TINY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = run("sample", "m.anydiff", "-n", "5", "-o", "s.npy", "--label", "Gentoo", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = run("sample", "m.anydiff", "-n", "5", "-o", "s2.npy", "--label", "Chinstrap", cwd=tmp_path)
    assert_one_line_error(out, "labels not seen in fit: ['Chinstrap']")
    np.save(tmp_path / "weights.npy", X[:, 1])
    out = run("fit", d / "data.npy", "-o", "c.anydiff", "--labels", "weights.npy", *TINY, cwd=tmp_path)
    assert_one_line_error(out, "y holds continuous values")
    assert not (tmp_path / "c.anydiff").exists()


@pytest.mark.parametrize("args,needle", [
    (["-n", "3", "--steps", "0"], "argument --steps: 0 must be at least 1"),
    (["-n", "0"], "argument -n: 0 must be at least 1"),
    (["-n", "3", "--sampler", "plms"], "sampler"),
])
def test_bad_sampling_options(files, tmp_path, args, needle):
    d, _ = files
    out = run("sample", d / "model.anydiff", *args, "-o", "s.npy", cwd=tmp_path)
    assert_one_line_error(out, needle, code=2 if "argument" in needle else 1)
    assert listing(tmp_path) == {}


def test_headerless_data_on_a_model_with_names(files, tmp_path):
    """A model fitted on a CSV with a header scores headerless rows by position, silently."""
    d, X = files
    np.savetxt(tmp_path / "rows.csv", X[:5], delimiter=",")
    out = run("score", d / "model.anydiff", "rows.csv", cwd=tmp_path)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    (tmp_path / "swapped.csv").write_text("b,a,c\n1,2,3\n")
    assert_one_line_error(run("score", d / "model.anydiff", "swapped.csv", cwd=tmp_path), "differ from the model's")


def test_demo_checks_for_matplotlib_before_training(tmp_path):
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {**ENV, "PYTHONPATH": f"{fake}{os.pathsep}{ROOT}"}
    out = run("demo", "--quick", "-o", "demo.png", cwd=tmp_path, env=env)
    assert_one_line_error(out, "writing a figure needs matplotlib")
    assert out.stdout == "" and not (tmp_path / "demo.png").exists()  # no training happened


def test_real_process_help_and_exit_codes():
    out = subprocess.run([sys.executable, "-m", "anydiff", "score", "/no/model", "/no/data.csv"], env=ENV,
                         capture_output=True, text=True)
    assert_one_line_error(out, "no such model file")
    out = subprocess.run([sys.executable, "-m", "anydiff", "fit"], env=ENV, capture_output=True, text=True)
    assert_one_line_error(out, "the following arguments are required", code=2)


# -- tables ---------------------------------------------------------------------------------------
def penguin_like(n=120, seed=0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    species = rng.choice(["Adelie", "Gentoo", "Chinstrap"], n)
    mass = np.round(3500 + 1200 * (species == "Gentoo") + rng.normal(0, 300, n))
    bill = np.round(39 + 8 * (species != "Adelie") + rng.normal(0, 2, n), 1)
    bill[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"species": species, "bill_length_mm": bill, "body_mass_g": mass.astype(np.int64),
                         "male": rng.random(n) < 0.5,
                         "seen": pd.Timestamp("2007-11-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D")})


def test_a_table_with_text_fits_a_tabular_model_and_keeps_cells(tmp_path):
    df = penguin_like()
    df.to_csv(tmp_path / "pen.csv", index=False)
    out = run("fit", "pen.csv", "-o", "pen.anydiff", *TINY, cwd=tmp_path)
    assert out.returncode == 0 and "trained a TabularDiffusion on 120 rows x 5 columns" in out.stdout, out.stderr
    out = run("sample", "pen.anydiff", "-n", "6", "-o", "s.csv", "--condition", "species=gentoo", "--seed", "0",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "species,bill_length_mm,body_mass_g,male,seen" and len(lines) == 7
    for line in lines[1:]:
        species, bill, mass, male, seen = line.split(",")
        assert species == "Gentoo" and male in ("True", "False") and mass.lstrip("-").isdigit()
        assert len(seen) == 10 and seen[4] == "-"  # dates come back as dates
    # impute: rows without gaps come back byte for byte, observed cells of the others too
    text = (tmp_path / "pen.csv").read_text().splitlines()
    holes = [text[0], text[1], "," + text[2].split(",", 1)[1], text[3].rsplit(",", 2)[0] + ",,"]
    (tmp_path / "holes.csv").write_text("\n".join(holes) + "\n")
    out = run("impute", "pen.anydiff", "holes.csv", "-o", "filled.csv", "--seed", "0", cwd=tmp_path)
    assert out.returncode == 0 and "filled 3 missing entries" in out.stdout, out.stderr
    got = (tmp_path / "filled.csv").read_text().splitlines()
    assert got[:2] == holes[:2]
    for want, row in zip(holes[2:], got[2:]):
        for w, g in zip(want.split(","), row.split(",")):
            assert g == w if w else g != ""
    assert_one_line_error(run("score", "pen.anydiff", "pen.csv", cwd=tmp_path), "has no likelihood")
    assert_one_line_error(run("fit", "pen.csv", "-o", "x.anydiff", "--label-dropout", "0.2", cwd=tmp_path),
                          "--label-dropout: not an option for a table")


def test_parquet_keeps_dtypes_exactly(tmp_path):
    import pandas as pd

    df = penguin_like()
    df["species"] = df["species"].astype("category")
    df["body_mass_g"] = df["body_mass_g"].astype("Int64")
    df.loc[::7, "body_mass_g"] = pd.NA
    df.to_parquet(tmp_path / "pen.parquet", index=False)
    assert run("fit", "pen.parquet", "-o", "m.anydiff", *TINY, cwd=tmp_path).returncode == 0
    out = run("sample", "m.anydiff", "-n", "5", "-o", "s.parquet", "--seed", "0", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    s = pd.read_parquet(tmp_path / "s.parquet")
    assert s.dtypes.equals(pd.read_parquet(tmp_path / "pen.parquet").dtypes) and len(s) == 5


def test_a_number_column_with_a_typo_is_an_error(tmp_path):
    rows = ["species,mass"] + [f"{'A' if i % 2 else 'B'},{3000 + i}" for i in range(30)]
    rows[17] = "A,31o0"
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    out = run("fit", "t.csv", "-o", "m.anydiff", cwd=tmp_path)
    assert_one_line_error(out, "t.csv, line 18, column 2 ('mass'): '31o0' is not a number, but 97% of")
    assert listing(tmp_path) == {"t.csv": ("\n".join(rows) + "\n").encode()}


def test_tabular_flag_keeps_integer_columns_integers(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["count,value"] + [f"{rng.poisson(4)},{rng.normal():.3f}" for _ in range(80)]
    (tmp_path / "n.csv").write_text("\n".join(rows) + "\n")
    assert run("fit", "n.csv", "-o", "m.anydiff", "--tabular", *TINY, cwd=tmp_path).returncode == 0
    assert run("sample", "m.anydiff", "-n", "20", "-o", "s.csv", cwd=tmp_path).returncode == 0
    for line in (tmp_path / "s.csv").read_text().splitlines()[1:]:
        count, value = line.split(",")
        assert count.isdigit() and len(value.split(".")[-1]) <= 3  # integers, and the data's 3 decimals


def test_an_empty_npy_file_is_a_value_error_naming_it(tmp_path):
    """numpy raises EOFError on a zero-byte .npy; every command reads it through read_table."""
    from anydiff.datafiles import read_table

    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.npy: cannot read it as a numpy array file"):
        read_table(str(tmp_path / "empty.npy"))
