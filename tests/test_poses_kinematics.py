"""Kinematic chains against references: hand-computed poses, a numpy URDF evaluator written here
(scipy rotations), pytorch_kinematics, autograd and finite differences; IK refinement; argument
checks."""
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from anydiff.poses.kinematics import KinematicChain, panda, pose_errors, refine_ik

FAST = settings(max_examples=15, deadline=None)
HALF = math.pi / 2


# -- references -----------------------------------------------------------------------------------
def urdf_fk_numpy(text, end_link, q):
    """End-effector transforms (B, 4, 4) of a serial URDF, by the URDF rules: each joint applies
    Trans(xyz) * R(rpy, fixed axes x-y-z) and then a rotation by q about its axis."""
    root = ET.fromstring(text)
    by_child = {j.find("child").get("link"): j for j in root.findall("joint")}
    path, link = [], end_link
    while link in by_child:
        path.insert(0, by_child[link])
        link = by_child[link].find("parent").get("link")
    out = []
    for qb in np.atleast_2d(q):
        T, k = np.eye(4), 0
        for j in path:
            o = j.find("origin")
            step = np.eye(4)
            step[:3, :3] = Rotation.from_euler("xyz", [float(v) for v in o.get("rpy").split()]).as_matrix()
            step[:3, 3] = [float(v) for v in o.get("xyz").split()]
            T = T @ step
            if j.get("type") != "fixed":
                axis = np.array([float(v) for v in j.find("axis").get("xyz").split()])
                rot = np.eye(4)
                rot[:3, :3] = Rotation.from_rotvec(axis / np.linalg.norm(axis) * qb[k]).as_matrix()
                T, k = T @ rot, k + 1
        out.append(T)
    return np.stack(out)


def dh_fk_numpy(dh, tool, q):
    """End-effector transform of one configuration, straight from Craig's definition
    T_{i-1,i} = RotX(alpha) TransX(a) RotZ(theta + q) TransZ(d), with elementary matrices."""
    def rot(axis, t):
        m = np.eye(4)
        m[:3, :3] = Rotation.from_rotvec(t * np.eye(3)[axis]).as_matrix()
        return m

    def trans(axis, s):
        m = np.eye(4)
        m[axis, 3] = s
        return m

    T = np.eye(4)
    for (a, alpha, d, theta), qi in zip(list(dh) + [tool], list(q) + [0.0]):
        T = T @ rot(0, alpha) @ trans(0, a) @ rot(2, theta + qi) @ trans(2, d)
    return T


def skew(w):
    return torch.tensor([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]], dtype=w.dtype)


angles = st.one_of(st.sampled_from([0.0, HALF, -HALF, math.pi]), st.floats(-math.pi, math.pi))
lengths = st.one_of(st.just(0.0), st.floats(-1, 1))


@st.composite
def dh_chains(draw):
    n = draw(st.integers(1, 7))
    rows = [(draw(lengths), draw(angles), draw(lengths), draw(angles)) for _ in range(n)]
    low = [draw(st.floats(-3, 0)) for _ in range(n)]
    limits = [(lo, lo + draw(st.floats(0.1, 3))) for lo in low]
    tool = draw(st.one_of(st.none(), st.tuples(lengths, angles, lengths, angles)))
    chain = KinematicChain.from_dh(rows, joint_limits=limits, tool=tool, name="random")
    chain.test_table = (rows, tool)  # for the elementary-products reference
    return chain


def random_q(chain, n=8, seed=0):
    return chain.sample_configurations(n, generator=torch.Generator().manual_seed(seed))


# -- forward kinematics ---------------------------------------------------------------------------
def test_panda_flange_at_zero_by_hand():
    p, R = panda().forward(torch.zeros(7, dtype=torch.float64))
    # x = a7 = 0.088; z = d1 + d3 + d5 - d_flange (joint 7 points down); R = RotX(pi)
    torch.testing.assert_close(p, torch.tensor([0.088, 0.0, 0.333 + 0.316 + 0.384 - 0.107],
                                               dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(R, torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)),
                               atol=1e-12, rtol=0)
    assert panda().joint_limits[3].tolist() == [-3.0718, -0.0698]


def test_planar_two_link_arm_by_hand():
    l1, l2 = 0.7, 0.4
    arm = KinematicChain.from_dh([(0, 0, 0, 0), (l1, 0, 0, 0)], joint_limits=[(-3, 3)] * 2,
                                 tool=(l2, 0, 0, 0))
    q = torch.tensor([[0.3, -1.1], [2.0, 0.5]], dtype=torch.float64)
    p, R = arm.forward(q)
    c1, s1 = torch.cos(q[:, 0]), torch.sin(q[:, 0])
    c12, s12 = torch.cos(q.sum(1)), torch.sin(q.sum(1))
    expected = torch.stack([l1 * c1 + l2 * c12, l1 * s1 + l2 * s12, torch.zeros(2, dtype=q.dtype)], 1)
    torch.testing.assert_close(p, expected, atol=1e-14, rtol=0)
    torch.testing.assert_close(R[:, :2, 0], torch.stack([c12, s12], 1), atol=1e-14, rtol=0)


@FAST
@given(dh_chains())
def test_dh_matches_elementary_products(chain):
    q = random_q(chain, 4)
    rows, tool = chain.test_table
    p, R = chain.forward(q)
    for b in range(4):
        T = dh_fk_numpy(rows, (0.0, 0.0, 0.0, 0.0) if tool is None else tool, q[b].numpy())
        np.testing.assert_allclose(p[b].numpy(), T[:3, 3], atol=1e-12, rtol=0)
        np.testing.assert_allclose(R[b].numpy(), T[:3, :3], atol=1e-12, rtol=0)


def test_tool_as_dh_row():
    dh, tool = [(0.1, 0.3, 0.2, 0.5), (0.4, -1.2, -0.1, 0.0)], (0.05, 0.4, 0.1, 0.2)
    chain = KinematicChain.from_dh(dh, joint_limits=[(-3, 3)] * 2, tool=tool)
    q = torch.tensor([0.3, -0.8], dtype=torch.float64)
    T = dh_fk_numpy(dh, tool, q.numpy())
    np.testing.assert_allclose(chain.forward(q)[0].numpy(), T[:3, 3], atol=1e-12, rtol=0)


def test_urdf_export_at_gimbal_lock():
    # RotX(pi/2) RotZ(pi/2) has pitch pi/2 in URDF roll-pitch-yaw: roll and yaw must stay consistent
    # (exactly at the lock and 1e-9 rad from it)
    dh = [(0.1, HALF, 0.2, HALF), (0.3, -HALF, 0.1, -HALF), (0.2, HALF, 0.0, -HALF + 1e-9),
          (0.1, -HALF + 1e-9, 0.3, HALF)]
    chain = KinematicChain.from_dh(dh, joint_limits=[(-3, 3)] * 4, tool=(0.1, -HALF, 0.2, HALF + 1e-9))
    assert_matches_urdf_evaluator(chain, random_q(chain, 5))


def assert_matches_urdf_evaluator(chain, q):
    """The chain's FK equals the numpy evaluator of its own URDF export to 1e-10."""
    T = urdf_fk_numpy(chain.to_urdf(), "end_effector", q.numpy())
    p, R = chain.forward(q)
    np.testing.assert_allclose(p.numpy(), T[:, :3, 3], atol=1e-10, rtol=0)
    np.testing.assert_allclose(R.numpy(), T[:, :3, :3], atol=1e-10, rtol=0)


@FAST
@given(dh_chains())
def test_dh_matches_urdf_evaluator(chain):
    assert_matches_urdf_evaluator(chain, random_q(chain, 6))


@FAST
@given(dh_chains())
def test_dh_matches_pytorch_kinematics(chain):
    pk = pytest.importorskip("pytorch_kinematics")
    q = random_q(chain, 6)
    text = chain.to_urdf()
    p, R = chain.forward(q)
    # pytorch_kinematics parses URDF origins in float32, so its own chain agrees to ~1e-7 only
    raw = pk.build_serial_chain_from_urdf(text, "end_effector").to(dtype=torch.float64)
    T = raw.forward_kinematics(q).get_matrix()
    torch.testing.assert_close(T[:, :3, 3], p, atol=1e-6, rtol=0)
    torch.testing.assert_close(T[:, :3, :3], R, atol=1e-6, rtol=0)
    # from_urdf uses pytorch_kinematics with float64 origins: same FK, frames and Jacobian
    urdf = KinematicChain.from_urdf(text, end_link="end_effector")
    assert urdf.joint_names == chain.joint_names
    torch.testing.assert_close(urdf.joint_limits, chain.joint_limits, atol=0, rtol=0)
    for a, b in [(urdf.frames(q), chain.frames(q)), (urdf.jacobian(q), chain.jacobian(q))]:
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_panda_against_pytorch_kinematics_jacobian():
    pk = pytest.importorskip("pytorch_kinematics")
    chain = panda()
    q = random_q(chain, 16)
    raw = pk.build_serial_chain_from_urdf(chain.to_urdf(), "end_effector").to(dtype=torch.float64)
    torch.testing.assert_close(raw.jacobian(q), chain.jacobian(q), atol=1e-6, rtol=0)


def test_shapes_and_dtypes():
    chain = panda()
    q64 = random_q(chain, 5)
    p, R = chain.forward(q64)
    assert p.shape == (5, 3) and R.shape == (5, 3, 3) and p.dtype == torch.float64
    p1, R1 = chain.forward(q64[2])
    assert p1.shape == (3,) and R1.shape == (3, 3)
    torch.testing.assert_close(p1, p[2], atol=0, rtol=0)
    p32, R32 = chain.forward(q64.float())
    assert p32.dtype == torch.float32 and R32.dtype == torch.float32
    torch.testing.assert_close(p32.double(), p, atol=1e-5, rtol=0)
    T = chain.frames(q64)
    assert T.shape == (5, 9, 4, 4)
    torch.testing.assert_close(T[:, 0], torch.eye(4, dtype=torch.float64).expand(5, 4, 4))
    torch.testing.assert_close(T[:, -1, :3, 3], p)
    assert chain.jacobian(q64).shape == (5, 6, 7) and chain.jacobian(q64[0]).shape == (6, 7)
    # differentiable
    q = q64.clone().requires_grad_(True)
    chain.forward(q)[0].sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


# -- Jacobian ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [panda, lambda: KinematicChain.from_dh(
    [(0.1, 0.3, 0.2, 0.5), (0.4, -1.2, -0.1, 0.0), (0.0, 2.0, 0.3, -0.7), (0.25, HALF, 0.0, 1.0)],
    joint_limits=[(-3, 3)] * 4, tool=(0.05, 0.4, 0.1, 0.2))])
def test_jacobian_against_autograd(make):
    chain = make()
    for q in random_q(chain, 4):
        J = chain.jacobian(q)
        dp = torch.autograd.functional.jacobian(lambda x: chain.forward(x)[0], q)
        torch.testing.assert_close(J[:3], dp, atol=1e-10, rtol=0)
        dR = torch.autograd.functional.jacobian(lambda x: chain.forward(x)[1], q)  # (3, 3, n)
        R = chain.forward(q)[1]
        for i in range(chain.n_joints):
            torch.testing.assert_close(dR[..., i] @ R.T, skew(J[3:, i]), atol=1e-10, rtol=0)


def test_jacobian_against_finite_differences():
    chain = panda()
    q, h = random_q(chain, 1)[0], 1e-6
    J = chain.jacobian(q)
    for i in range(7):
        step = torch.zeros(7, dtype=q.dtype)
        step[i] = h
        (pp, Rp), (pm, Rm) = chain.forward(q + step), chain.forward(q - step)
        torch.testing.assert_close((pp - pm) / (2 * h), J[:3, i], atol=1e-8, rtol=0)
        w = Rotation.from_matrix((Rp @ Rm.T).numpy()).as_rotvec() / (2 * h)
        np.testing.assert_allclose(w, J[3:, i].numpy(), atol=1e-8)


# -- IK and errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("with_rotation", [False, True])
def test_refine_ik_converges_from_nearby_seeds(with_rotation):
    chain = panda()
    q_true = random_q(chain, 64, seed=3)
    p, R = chain.forward(q_true)
    seeds = q_true + 0.1 * torch.randn(q_true.shape, generator=torch.Generator().manual_seed(4),
                                       dtype=torch.float64)
    seeds = torch.clamp(seeds, chain.joint_limits[:, 0], chain.joint_limits[:, 1])
    target_R = R if with_rotation else None
    q = refine_ik(chain, seeds, p, target_R, steps=10)
    assert q.shape == seeds.shape and chain.within_limits(q).all()
    pos, rot = pose_errors(chain, q, p, target_R)
    ok = pos < 1e-4
    if with_rotation:
        ok &= rot < 1e-3
    else:
        assert rot is None
    assert ok.double().mean() >= 0.9, (pos, rot)
    pos0, _ = pose_errors(chain, seeds, p)
    assert pos.median() < 1e-3 * pos0.median()
    # one configuration, float32, a shared (3,) target
    q1 = refine_ik(chain, seeds[0].float(), p[0])
    assert q1.shape == (7,) and q1.dtype == torch.float32


def test_pose_errors_against_scipy():
    chain = panda()
    q = random_q(chain, 10)
    R_t = torch.from_numpy(Rotation.random(10, random_state=0).as_matrix())
    p_t = torch.zeros(3, dtype=torch.float64)
    pos, rot = pose_errors(chain, q, p_t, R_t)
    p, R = chain.forward(q)
    torch.testing.assert_close(pos, p.norm(dim=1))
    expected = Rotation.from_matrix((R_t @ R.transpose(1, 2)).numpy()).magnitude()
    np.testing.assert_allclose(rot.numpy(), expected, atol=1e-10)
    # angles of (nearly) pi are where log maps go wrong
    flip = torch.from_numpy(Rotation.from_rotvec([[0, 0, math.pi], [math.pi - 1e-9, 0, 0]]).as_matrix())
    q2 = q[:2]
    _, rot2 = pose_errors(chain, q2, p_t, flip @ chain.forward(q2)[1])
    np.testing.assert_allclose(rot2.numpy(), [math.pi, math.pi - 1e-9], atol=1e-9)


# -- joint space ------------------------------------------------------------------------------------
def test_sample_configurations_and_limits():
    chain = panda()
    a = chain.sample_configurations(200, generator=torch.Generator().manual_seed(7))
    b = chain.sample_configurations(200, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert a.shape == (200, 7) and chain.within_limits(a).all()
    assert chain.sample_configurations(3, dtype=torch.float32).dtype == torch.float32
    outside = a[:2].clone()
    outside[0, 3] = 0.0  # joint 4 must stay below -0.0698
    assert chain.within_limits(outside).tolist() == [False, True]
    assert bool(chain.within_limits(a[0]))


def test_urdf_continuous_joint_and_file(tmp_path):
    pytest.importorskip("pytorch_kinematics")
    text = """<robot name="two"><link name="a"/><link name="b"/><link name="c"/><link name="tip"/>
      <joint name="j1" type="continuous"><parent link="a"/><child link="b"/>
        <origin xyz="0 0 0.5" rpy="0 0 0"/><axis xyz="0 0 1"/></joint>
      <joint name="j2" type="revolute"><parent link="b"/><child link="c"/>
        <origin xyz="0.3 0 0" rpy="0 0 0"/><axis xyz="0 1 0"/>
        <limit lower="-1" upper="2" effort="1" velocity="1"/></joint>
      <joint name="fix" type="fixed"><parent link="c"/><child link="tip"/>
        <origin xyz="0.2 0 0" rpy="0 0 0"/></joint></robot>"""
    path = tmp_path / "two.urdf"
    path.write_text(text)
    chain = KinematicChain.from_urdf(path, end_link="tip")
    assert chain.joint_names == ["j1", "j2"] and chain.n_joints == 2
    torch.testing.assert_close(chain.joint_limits,
                               torch.tensor([[-math.pi, math.pi], [-1.0, 2.0]], dtype=torch.float64))
    q = torch.tensor([[0.4, 0.7]], dtype=torch.float64)
    # by hand: turn 0.4 about z at height 0.5, then pitch 0.7 about y at x = 0.3, tip 0.2 further
    r = 0.3 + 0.2 * math.cos(0.7)
    expected = [r * math.cos(0.4), r * math.sin(0.4), 0.5 - 0.2 * math.sin(0.7)]
    torch.testing.assert_close(chain.forward(q)[0][0], torch.tensor(expected, dtype=torch.float64))
    assert chain.to_urdf() == text
    assert chain.frames(q).shape == (1, 4, 4, 4)
    J = chain.jacobian(q)
    torch.testing.assert_close(J[0, :3], torch.autograd.functional.jacobian(
        lambda x: chain.forward(x)[0], q[0]))


# -- argument checks ----------------------------------------------------------------------------------
def test_from_dh_errors():
    lim = [(-1, 1)] * 2
    with pytest.raises(ValueError, match="dh must have shape"):
        KinematicChain.from_dh([[0, 0, 0]] * 2, joint_limits=lim)
    with pytest.raises(ValueError, match="dh contains NaN"):
        KinematicChain.from_dh([[0, 0, 0, float("nan")]] * 2, joint_limits=lim)
    with pytest.raises(ValueError, match="joint_limits must have shape"):
        KinematicChain.from_dh([[0, 0, 0, 0]] * 2, joint_limits=[(-1, 1)])
    with pytest.raises(ValueError, match="joint_limits: low must be < high"):
        KinematicChain.from_dh([[0, 0, 0, 0]] * 2, joint_limits=[(-1, 1), (1, 1)])
    with pytest.raises(ValueError, match="tool must be"):
        KinematicChain.from_dh([[0, 0, 0, 0]] * 2, joint_limits=lim, tool=np.eye(3))
    with pytest.raises(ValueError, match="tool must be a rigid"):
        KinematicChain.from_dh([[0, 0, 0, 0]] * 2, joint_limits=lim, tool=2 * np.eye(4))
    with pytest.raises(ValueError, match="joint_names"):
        KinematicChain.from_dh([[0, 0, 0, 0]] * 2, joint_limits=lim, joint_names=["a"])


def test_q_and_target_errors():
    chain = panda()
    q = random_q(chain, 4)
    with pytest.raises(ValueError, match=r"q must have shape \(B, 7\)"):
        chain.forward(q[:, :6])
    bad = q.clone()
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match="q contains NaN or infinite"):
        chain.jacobian(bad)
    p, R = chain.forward(q)
    with pytest.raises(ValueError, match="target_position must have shape"):
        refine_ik(chain, q, p[:3])
    with pytest.raises(ValueError, match="target_position contains NaN"):
        refine_ik(chain, q, torch.full((4, 3), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="target_rotation must have shape"):
        refine_ik(chain, q, p, R[:, :2])
    with pytest.raises(ValueError, match="target_rotation must have shape"):
        pose_errors(chain, q, p, R[:2])
    with pytest.raises(ValueError, match="steps"):
        refine_ik(chain, q, p, steps=-1)
    with pytest.raises(ValueError, match="damping"):
        refine_ik(chain, q, p, damping=0.0)
    with pytest.raises(ValueError, match="n=0"):
        chain.sample_configurations(0)


def test_from_urdf_errors(tmp_path):
    pytest.importorskip("pytorch_kinematics")
    text = panda().to_urdf()
    with pytest.raises(ValueError, match="urdf=.*neither a file"):
        KinematicChain.from_urdf(str(tmp_path / "missing.urdf"), end_link="tip")
    with pytest.raises(ValueError, match="not valid XML"):
        KinematicChain.from_urdf("<robot><link name='a'></robot>", end_link="a")
    with pytest.raises(ValueError, match=r"end_link='hand' is not a link.*link7"):
        KinematicChain.from_urdf(text, end_link="hand")
    with pytest.raises(ValueError, match="root_link='link5' is not an ancestor"):
        KinematicChain.from_urdf(text, end_link="link3", root_link="link5")
    prismatic = text.replace('name="panda_joint3" type="revolute"', 'name="panda_joint3" type="prismatic"')
    with pytest.raises(ValueError, match="'panda_joint3' is prismatic"):
        KinematicChain.from_urdf(prismatic, end_link="end_effector")
    with pytest.raises(ValueError, match="malformed joint"):
        KinematicChain.from_urdf("<robot><link name='a'/><joint name='j' type='revolute'>"
                                 "<child link='a'/></joint></robot>", end_link="a")
    no_limit = text.replace('<limit lower="-2.8973" upper="2.8973" effort="0" velocity="0"/>', "", 1)
    with pytest.raises(ValueError, match="'panda_joint1' has no <limit"):
        KinematicChain.from_urdf(no_limit, end_link="end_effector")
    # a sub-chain: from link2 to link5 has joints 3, 4, 5
    sub = KinematicChain.from_urdf(text, end_link="link5", root_link="link2")
    assert sub.joint_names == ["panda_joint3", "panda_joint4", "panda_joint5"]
