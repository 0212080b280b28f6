"""TabularDiffusion against tables whose answer is known by construction, and random tables that
must never crash it."""
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from sklearn.base import clone

import anydiff as ad
from anydiff.tabular import TabularDiffusion
from table_strategies import tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(max_steps=3, batch_size=16, hidden=16, depth=1, sampling_steps=2, reference_batch=0, random_state=0)


def known_table(n=1500, seed=0) -> pd.DataFrame:
    """group a (70 %) / b; x ~ N(0, 1) for a and N(4, 1) for b; x missing in 40 % of the a rows
    and never in b rows; an integer count that is 1 + group b; a boolean flag that equals group b."""
    rng = np.random.default_rng(seed)
    group = np.where(rng.random(n) < 0.7, "a", "b")
    x = rng.normal(size=n) + 4.0 * (group == "b")
    x[(group == "a") & (rng.random(n) < 0.4)] = np.nan
    return pd.DataFrame({"group": pd.Categorical(group, categories=["a", "b", "c"]), "x": x,
                         "count": (1 + (group == "b")).astype(np.int64), "flag": group == "b"})


@pytest.fixture(scope="module", params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def fitted(request):
    """The known table fitted on the CPU and, where there is one, on a GPU."""
    df = known_table()
    est = TabularDiffusion(max_steps=600, hidden=64, depth=2, sampling_steps=25, device=request.param,
                           random_state=0).fit(df)
    assert est._device().type == request.param
    return est, df


def test_samples_keep_columns_dtypes_and_the_joint_structure(fitted):
    est, df = fitted
    s = est.sample(2000, random_state=1)
    assert len(s) == 2000 and list(s.columns) == list(df.columns) and s.dtypes.equals(df.dtypes)
    assert list(s["group"].cat.categories) == ["a", "b", "c"] and "c" not in set(s["group"])  # never seen
    b = (s["group"] == "b").to_numpy()
    assert abs(b.mean() - 0.3) < 0.06
    assert set(s["count"]) <= {1, 2} and np.mean(s["count"].to_numpy() == 1 + b) > 0.9
    assert np.mean(s["flag"].to_numpy() == b) > 0.9
    # missingness: only in group a, at about 40 % of it (28 % overall)
    miss = s["x"].isna().to_numpy()
    assert abs(miss[~b].mean() - 0.4) < 0.08 and miss[b].mean() < 0.03
    assert abs(np.nanmean(s["x"][b]) - 4.0) < 0.4 and abs(np.nanmean(s["x"][~b])) < 0.4


def test_conditions_hold_exactly_and_shape_the_rest(fitted):
    est, _ = fitted
    s = est.sample(300, conditions={"group": "b"}, random_state=2)
    assert len(s) == 300 and (s["group"] == "b").all()
    assert abs(s["x"].mean() - 4.0) < 0.5 and s["x"].isna().mean() < 0.05
    rows = pd.DataFrame({"group": ["a", None, "b"], "x": [np.nan, 4.25, -1.0]})
    s = est.sample(conditions=rows, random_state=3)
    assert len(s) == 3 and s.dtypes.equals(est.sample(1, random_state=0).dtypes)
    assert s["group"][0] == "a" and s["group"][2] == "b" and s["x"][1] == 4.25 and s["x"][2] == -1.0


def test_impute_fills_only_missing_cells_given_the_row(fitted):
    est, df = fitted
    holes = df.iloc[:400].copy()
    holes.index = np.arange(1000, 1400)  # a custom index is kept
    b = (holes["group"] == "b").to_numpy()
    rng = np.random.default_rng(1)  # not the table's own seed: its draws decided the groups
    holes.loc[b & (rng.random(400) < 0.5), "x"] = np.nan  # x missing in b rows: should become about 4
    holes.loc[~b & (rng.random(400) < 0.3), "group"] = np.nan
    before = holes.copy()
    filled = est.impute(holes, random_state=0)
    pd.testing.assert_frame_equal(holes, before)  # the input is untouched
    assert filled.index.equals(holes.index) and filled.dtypes.equals(holes.dtypes)
    observed = holes.notna().to_numpy()
    for j, c in enumerate(holes.columns):
        pd.testing.assert_series_equal(filled[c][observed[:, j]], holes[c][observed[:, j]])
    assert filled["group"].notna().all()
    was_b_missing_x = b & holes["x"].isna().to_numpy()
    assert abs(filled["x"][was_b_missing_x].mean() - 4.0) < 0.6
    # rows whose x is about 4 and whose count is 2 get group b back
    lost = holes["group"].isna().to_numpy()
    assert (filled["group"][lost] == "a").mean() > 0.9  # they were a rows (count 1, flag False)
    many = est.impute(holes, n_imputations=3, random_state=0)
    assert len(many) == 3 and not many[0]["x"].equals(many[1]["x"])
    for draw in many:  # each draw keeps every observed cell, the index and the dtypes
        assert draw.index.equals(holes.index) and draw.dtypes.equals(holes.dtypes) and draw.notna().all().all()
        for j, c in enumerate(holes.columns):
            pd.testing.assert_series_equal(draw[c][observed[:, j]], holes[c][observed[:, j]])
    again = est.impute(holes, n_imputations=3, random_state=0)
    for a, b in zip(many, again):
        pd.testing.assert_frame_equal(a, b)


def test_reproducible_and_saved_without_rows(fitted, tmp_path):
    est, df = fitted
    pd.testing.assert_frame_equal(est.sample(50, random_state=5), est.sample(50, random_state=5))
    est.save(tmp_path / "t.anydiff")
    loaded = ad.load(tmp_path / "t.anydiff")
    assert type(loaded) is TabularDiffusion and loaded.get_params() == est.get_params()
    pd.testing.assert_frame_equal(loaded.sample(50, random_state=5), est.sample(50, random_state=5))
    complete = df.dropna().iloc[:20]
    pd.testing.assert_frame_equal(loaded.impute(complete, random_state=0), complete)  # nothing to fill
    from safetensors import safe_open

    with safe_open(tmp_path / "t.anydiff", framework="pt") as fh:
        assert not any(k.startswith("data") for k in fh.keys())
        header = fh.metadata()
    assert header["module"] == "anydiff.tabular.estimator"
    stored = header["fitted"].count(",")  # every number the metadata holds, roughly
    assert stored < 3 * 1000 + 200  # quantiles of at most 1000 per numeric column, no rows


def test_same_table_whatever_the_thread_count(tmp_path):
    code = ("import sys, torch, pandas as pd; sys.path.insert(0, {tests!r}); torch.set_num_threads(int(sys.argv[1]));"
            "from test_tabular_estimator import known_table; from anydiff.tabular import TabularDiffusion;"
            "est = TabularDiffusion(max_steps=40, hidden=32, depth=1, sampling_steps=5, random_state=0)"
            ".fit(known_table(300)); est.sample(200, random_state=1).to_pickle(sys.argv[2])").format(
        tests=os.path.join(ROOT, "tests"))
    env = {**os.environ, "PYTHONPATH": ROOT}
    for threads in (1, 2):
        subprocess.run([sys.executable, "-c", code, str(threads), str(tmp_path / f"{threads}.pkl")], env=env,
                       check=True, timeout=300)
    pd.testing.assert_frame_equal(pd.read_pickle(tmp_path / "1.pkl"), pd.read_pickle(tmp_path / "2.pkl"))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tables(max_cols=8, max_rows=12))
def test_random_tables_never_crash_and_keep_dtypes(spec):
    df, types, _, max_onehot = spec
    est = TabularDiffusion(**TINY, column_types=types, max_onehot=max(max_onehot, 1)).fit(df)
    s = est.sample(5, random_state=0)
    assert s.dtypes.equals(df.dtypes) and len(s) == 5
    filled = est.impute(df, random_state=0, resample=1, steps=20)
    assert filled.dtypes.equals(df.dtypes) and filled.notna().all().all()


@pytest.mark.parametrize("make,needle", [
    (lambda: pd.DataFrame(), "empty"),
    (lambda: pd.DataFrame({"a": [np.nan, np.nan]}), "'a'"),
    (lambda: pd.DataFrame({"a": [1, "x", 2.5]}), "'a'"),
    (lambda: pd.DataFrame([[1, 2]], columns=["a", "a"]), "'a'"),
    (lambda: pd.DataFrame({"a": [1.0, np.inf]}), "'a'"),
    (lambda: np.zeros((3, 2)), "DataFrame"),
])
def test_bad_tables_name_the_column(make, needle):
    with pytest.raises(ValueError, match=needle):
        TabularDiffusion(**TINY).fit(make())


def test_bad_calls_are_clear(fitted):
    est, df = fitted
    with pytest.raises(ValueError, match="n_samples"):
        est.sample(0)
    with pytest.raises(ValueError, match="n_samples"):
        est.sample()
    with pytest.raises(ValueError, match="unknown columns \\['colour'\\]"):
        est.sample(3, conditions={"colour": "red"})
    with pytest.raises(ValueError, match="'group'"):
        est.sample(3, conditions={"group": "z"})  # a category never seen
    with pytest.raises(ValueError, match="'x'"):
        est.impute(df.drop(columns="x"))
    with pytest.raises(ValueError, match="n_imputations"):
        est.impute(df, n_imputations=0)
    with pytest.raises(ValueError, match="steps=0"):
        est.impute(df, steps=0)
    with pytest.raises(ValueError, match="conditions has 2 rows"):
        est.sample(3, conditions=df.iloc[:2])
    with pytest.raises(ValueError, match="y"):
        clone(est).fit(df, df["x"])


def test_ten_thousand_categories_fit_in_little_memory():
    """A column of 10,000 distinct values costs 14 analog bits, not 10,000 one-hot dimensions."""
    import tracemalloc

    n = 20000
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"zip": [f"z{i:05d}" for i in rng.integers(0, 10000, n)], "x": rng.normal(size=n)})
    tracemalloc.start()
    est = TabularDiffusion(**{**TINY, "max_steps": 2}).fit(df)
    s = est.sample(2000, random_state=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert est.encoder_.n_dims_ == 14 + 1
    assert set(s["zip"]) <= set(df["zip"]) and peak < 200e6  # one-hot floats alone would be 800 MB


def test_auto_steps_are_passes_over_the_rows_and_knots_summarise():
    """max_steps="auto": 300 passes, at least 300 and at most 1000 steps; the model file keeps at most one quantile
    knot per ten values of a column, so a small table's values are not stored one by one."""
    import json

    from anydiff.tabular.estimator import AUTO_EPOCHS

    small = known_table(40)
    params = {**TINY, "max_steps": "auto"}
    assert TabularDiffusion(**params).fit(small).n_iter_ == 750 == AUTO_EPOCHS * 40 // 16
    tiny = known_table(12)
    assert TabularDiffusion(**params).fit(tiny).n_iter_ == 300  # the floor
    assert TabularDiffusion(**params).fit(known_table(60)).n_iter_ == 1000  # the ceiling
    est = TabularDiffusion(**{**TINY, "max_steps": 2}).fit(known_table(300))
    meta, _ = est._fitted_state()
    refs = [c["state"]["refs"] for c in json.loads(json.dumps(meta))["encoder"]["columns"] if "refs" in c["state"]]
    assert refs and all(len(r) <= 30 for r in refs)


def test_float_notation_in_a_csv_stays_float(tmp_path):
    from anydiff.datafiles import read_table

    (tmp_path / "a.csv").write_text("name,mass,count\nx,181.0,3\ny,,4\nz,190.5,\n")
    frame = read_table(str(tmp_path / "a.csv"), typed=True).frame
    assert str(frame["mass"].dtype) == "float64" and str(frame["count"].dtype) == "Int64"


def test_imputations_follow_the_true_conditional():
    """Correlated Gaussian columns: y | x is N(0.8 x, 0.6^2) in closed form. Multiple imputations
    of y given x match its mean and spread: sd 0.64 here at the defaults (3 RePaint repeats of 100
    steps), 0.55 with 10 repeats of 50 steps; plain replacement inpainting (resample=1) gave 0.75
    on the same model, and fails this test."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=2000)
    df = pd.DataFrame({"x": x, "y": 0.8 * x + 0.6 * rng.normal(size=2000)})
    est = TabularDiffusion(hidden=64, depth=2, max_steps=800, sampling_steps=50, random_state=0).fit(df)
    xt = rng.normal(size=200)
    imputations = est.impute(pd.DataFrame({"x": xt, "y": np.nan}), n_imputations=5, random_state=0)
    residual = np.stack([d["y"].to_numpy() for d in imputations], 1) - 0.8 * xt[:, None]
    assert abs(residual.mean()) < 0.08 and 0.48 < residual.std() < 0.68


def test_mixed_precision_is_bf16_on_cpus_with_amx(monkeypatch):
    """"auto" trains under bf16 autocast on a CPU with AMX tiles and in float32 on one without;
    "no" and "bf16" are passed on as given, and a bf16-trained model samples a valid table."""
    import anydiff.estimators
    import anydiff.tabular.estimator as module

    seen = []
    trainer = anydiff.estimators.Trainer

    def recording(*args, **kwargs):
        seen.append(kwargs["mixed_precision"])
        return trainer(*args, **kwargs)

    monkeypatch.setattr(anydiff.estimators, "Trainer", recording)
    table = known_table(200)
    for amx, setting, expected in ((True, "auto", "bf16"), (False, "auto", "auto"), (True, "no", "no"),
                                   (False, "bf16", "bf16")):
        monkeypatch.setattr(module, "cpu_has_amx", lambda amx=amx: amx)
        est = TabularDiffusion(**{**TINY, "max_steps": 20}, mixed_precision=setting, device="cpu").fit(table)
        assert seen[-1] == expected
    out = est.sample(50, random_state=0)  # the last one trained under bf16 autocast
    assert out.dtypes.equals(table.dtypes) and out.notna().any().all()
    with pytest.raises(ValueError, match="mixed_precision"):
        TabularDiffusion(**TINY, mixed_precision="fp16").fit(table)
