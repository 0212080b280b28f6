"""Progressive distillation: a student's few DDIM steps reproduce its teacher's many, from the same
noise, far better than the teacher's own few steps; students live in the model file."""
import numpy as np
import pytest
import torch

import anydiff as ad
from anydiff.distill import progressive_distillation


@pytest.fixture(scope="module")
def fitted():
    X = ad.datasets.make_moons(2000, noise=0.1, random_state=0)
    est = ad.VectorDiffusion(max_steps=800, hidden=64, depth=2, device="cpu", random_state=0).fit(X)
    return est, X


def ddim_map(model, est, x_T, steps):
    return ad.sample(model, tuple(x_T.shape), schedule=est.schedule_, prediction=est.prediction, sampler="ddim",
                     steps=steps, timesteps="trailing", x_T=x_T)


def test_student_matches_the_teachers_many_steps(fitted):
    """The deterministic maps noise -> data: after distilling 32 -> 4 steps, the 4-step student's
    map is much closer to the teacher's 32-step map than the teacher's own 4-step map is."""
    est, X = fitted
    Z = torch.from_numpy((X - est.mean_) / est.scale_).float()
    students = progressive_distillation(est.model_, Z, schedule=est.schedule_, prediction=est.prediction, steps=4,
                                        teacher_steps=32, steps_per_round=300, batch_size=256, learning_rate=1e-3,
                                        device="cpu", seed=0, verbose=False)
    assert sorted(students) == [4, 8, 16]
    x_T = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = ddim_map(est.model_, est, x_T, 32)
        teacher_err = (ddim_map(est.model_, est, x_T, 4) - reference).norm(dim=1).mean()
        student_err = (ddim_map(students[4], est, x_T, 4) - reference).norm(dim=1).mean()
        mid_err = (ddim_map(students[16], est, x_T, 16) - reference).norm(dim=1).mean()
    assert student_err < 0.5 * teacher_err, (float(student_err), float(teacher_err))
    assert mid_err < student_err


def test_estimator_students_sample_and_survive_save_load(fitted, tmp_path):
    est, X = fitted
    est.distill(X, steps=4, teacher_steps=16, steps_per_round=50)
    assert sorted(est.students_) == [4, 8]
    a = est.sample(300, steps=4, random_state=0)
    # the student samples with DDIM on its own grid: the same as calling it by hand
    by_hand = ad.sample(est.students_[4], (300, 2), schedule=est.schedule_, prediction=est.prediction,
                        sampler="ddim", steps=4, timesteps="trailing", generator=torch.Generator().manual_seed(0),
                        clip_x0=est._clip_bounds())
    np.testing.assert_allclose(a, by_hand.double().numpy() * est.scale_ + est.mean_, atol=1e-5)
    # without a student of that size, steps= runs the model's sampler with that many steps
    six = est.sample(50, steps=6, random_state=1)
    default = est.sampling_steps
    np.testing.assert_allclose(six, est.set_params(sampling_steps=6).sample(50, random_state=1))
    est.set_params(sampling_steps=default)
    path = tmp_path / "moons.anydiff"
    est.save(path)
    loaded = ad.load(path)
    assert sorted(loaded.students_) == [4, 8]
    np.testing.assert_allclose(loaded.sample(300, steps=4, random_state=0), a)


def test_distill_bad_input(fitted):
    est, X = fitted
    with pytest.raises(ValueError, match="power of two"):
        est.distill(X, steps=4, teacher_steps=24)
    with pytest.raises(ValueError, match="give y exactly when fit had y"):
        est.distill(X, np.zeros(len(X)), steps=4)
    with pytest.raises(ValueError, match="steps"):
        est.sample(3, steps=0)


def test_tabular_students():
    pytest.importorskip("pandas")
    import pandas as pd

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=400), "c": rng.choice(["a", "b"], 400), "k": rng.integers(0, 5, 400)})
    tab = ad.TabularDiffusion(max_steps=60, hidden=32, depth=1, device="cpu", random_state=0).fit(df)
    tab.distill(df, steps=2, teacher_steps=4, steps_per_round=20)
    out = tab.sample(50, steps=2, random_state=0)
    assert sorted(tab.students_) == [2] and list(out.columns) == ["x", "c", "k"]
    assert (out.dtypes == df.dtypes).all() and len(out) == 50
