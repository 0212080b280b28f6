"""Serial robot arms: batched, differentiable forward kinematics, Jacobians and IK refinement in torch.

A chain is built from a Denavit-Hartenberg table in the *modified* (Craig 1986/2005) convention,
one row ``(a_{i-1}, alpha_{i-1}, d_i, theta_offset_i)`` per revolute joint::

    T_{i-1,i}(q_i) = RotX(alpha_{i-1}) TransX(a_{i-1}) RotZ(q_i + theta_offset_i) TransZ(d_i)

so joint ``i`` turns about the z axis of frame ``i``, whose origin and axis in the base frame are
``p_i`` and ``z_i``. The geometric Jacobian (Siciliano et al. 2009, Robotics, sec. 3.1.3) has the
column ``[z_i x (p_e - p_i); z_i]`` for joint ``i``: linear velocity of the end effector ``p_e``
on top, angular velocity below, both in the base frame.

A chain can also be read from a URDF file (revolute and continuous joints) through the optional
``pytorch_kinematics`` package; its joint origins are re-read here in float64, because
``pytorch_kinematics`` 0.10 parses them in float32 (errors around 1e-7 m and 1e-7 rad).

:func:`refine_ik` polishes joint configurations (for example samples of a diffusion model) toward
a target pose by damped least squares (Wampler 1986; Nakamura & Hanafusa 1986).
"""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from xml.sax.saxutils import quoteattr

import numpy as np
import torch
from torch import Tensor

from anydiff._utils import check_finite, check_int

__all__ = ["KinematicChain", "panda", "refine_ik", "pose_errors"]


# -- small SE(3) helpers ----------------------------------------------------------------------------
def _dh_transform(a: Tensor, alpha: Tensor, d: Tensor, theta: Tensor) -> Tensor:
    """Modified-DH link transforms, broadcast over the inputs: ``(..., 4, 4)``."""
    a, alpha, d, theta = torch.broadcast_tensors(a, alpha, d, theta)
    ca, sa, ct, st = torch.cos(alpha), torch.sin(alpha), torch.cos(theta), torch.sin(theta)
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    rows = [(ct, -st, zero, a), (st * ca, ct * ca, -sa, -sa * d), (st * sa, ct * sa, ca, ca * d),
            (zero, zero, zero, one)]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def _rpy(R: np.ndarray) -> tuple[float, float, float]:
    """URDF roll-pitch-yaw of ``R = Rz(y) Ry(p) Rx(r)``, stable at gimbal lock: ``y`` is found
    after taking ``Rx(r)`` out, so ``r`` and ``y`` stay consistent (M. Day 2015, "Euler angles
    from a rotation matrix")."""
    r = math.atan2(R[2, 1], R[2, 2])
    cr, sr = math.cos(r), math.sin(r)
    p = math.atan2(-R[2, 0], R[2, 1] * sr + R[2, 2] * cr)
    y = math.atan2(-(R[0, 1] * cr - R[0, 2] * sr), R[1, 1] * cr - R[1, 2] * sr)
    return r, p, y


def _transform_from_origin(xyz, rpy) -> np.ndarray:
    """4x4 transform of a URDF ``<origin xyz rpy>``: ``Trans(xyz) Rz(y) Ry(p) Rx(r)``."""
    (cr, cp, cy), (sr, sp, sy) = np.cos(rpy), np.sin(rpy)
    T = np.eye(4)
    T[:3, :3] = [[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                 [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                 [-sp, cp * sr, cp * cr]]
    T[:3, 3] = xyz
    return T


def _rotvec(R: Tensor) -> Tensor:
    """Log map of SO(3), ``(..., 3, 3) -> (..., 3)`` axis-angle, via the unit quaternion found by
    Shepperd's (1978) method: the largest of ``|w|, |x|, |y|, |z|`` is the divisor, so it is
    accurate for every angle up to pi."""
    m = R.reshape(*R.shape[:-2], 9).unbind(-1)
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = m
    four_sq = torch.stack([1 + r00 + r11 + r22, 1 + r00 - r11 - r22,
                           1 - r00 + r11 - r22, 1 - r00 - r11 + r22], -1)  # 4 w^2, 4 x^2, ...
    cand = torch.stack([
        torch.stack([four_sq[..., 0], r21 - r12, r02 - r20, r10 - r01], -1),
        torch.stack([r21 - r12, four_sq[..., 1], r10 + r01, r02 + r20], -1),
        torch.stack([r02 - r20, r10 + r01, four_sq[..., 2], r12 + r21], -1),
        torch.stack([r10 - r01, r20 + r02, r21 + r12, four_sq[..., 3]], -1)], -2)
    best = four_sq.argmax(-1, keepdim=True)
    quat = torch.take_along_dim(cand, best[..., None], -2).squeeze(-2)
    quat = quat / quat.norm(dim=-1, keepdim=True)
    quat = torch.where(quat[..., :1] < 0, -quat, quat)  # w >= 0: angle in [0, pi]
    w, v = quat[..., 0], quat[..., 1:]
    sin_half = v.norm(dim=-1)
    angle = 2 * torch.atan2(sin_half, w)
    scale = torch.where(sin_half > 1e-12, angle / sin_half.clamp_min(1e-12), 2 / w)
    return v * scale[..., None]


def _as_float64(x, name: str, shape_text: str) -> Tensor:
    try:
        t = torch.as_tensor(np.asarray(x, dtype=np.float64) if not torch.is_tensor(x) else x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array of numbers of shape {shape_text}: {err}") from err
    t = t.detach().to("cpu", torch.float64)
    check_finite(t, name)
    return t


def _check_limits(limits, n: int, name: str = "joint_limits") -> Tensor:
    lim = _as_float64(limits, name, f"(n_joints={n}, 2)")
    if lim.shape != (n, 2):
        raise ValueError(f"{name} must have shape (n_joints={n}, 2) rows (low, high) in radians; "
                         f"got shape {tuple(lim.shape)}")
    bad = (lim[:, 0] >= lim[:, 1]).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"{name}: low must be < high, but not for joint(s) {bad} "
                         f"({lim[bad].tolist()}); give each row as (low, high)")
    return lim


def _parse_urdf(text: str) -> tuple[str, list[str], dict]:
    """Robot name, link names and ``{child link: joint}`` of a URDF text, numbers in float64."""
    try:
        root = ET.fromstring(text)
        floats = lambda el, key, default: [float(v) for v in (default if el is None  # noqa: E731
                                                              else el.get(key, default)).split()]
        joints = {}
        for e in root.findall("joint"):
            origin, limit = e.find("origin"), e.find("limit")
            joints[e.find("child").get("link")] = dict(
                name=e.get("name"), type=e.get("type"), child=e.find("child").get("link"),
                parent=e.find("parent").get("link"), axis=floats(e.find("axis"), "xyz", "1 0 0"),
                xyz=floats(origin, "xyz", "0 0 0"), rpy=floats(origin, "rpy", "0 0 0"),
                limits=None if limit is None else (float(limit.get("lower", 0)), float(limit.get("upper", 0))))
    except ET.ParseError as err:
        raise ValueError(f"urdf is not valid XML: {err}") from err
    except (AttributeError, ValueError) as err:
        raise ValueError(f"urdf has a malformed joint (each needs <parent link>, <child link> and "
                         f"numeric origin, axis and limit attributes): {err}") from err
    return root.get("name", "urdf"), [e.get("name") for e in root.findall("link")], joints


class KinematicChain:
    """A serial robot arm: batched, differentiable forward kinematics in torch.

    Build one with :meth:`from_dh`, :meth:`from_urdf` or :func:`panda`. Every method takes joint
    angles ``q`` of shape ``(B, n_joints)``, or ``(n_joints,)`` for one configuration (the outputs
    then lose their batch axis too), and computes in the dtype and on the device of ``q``.

    Attributes
    ----------
    n_joints : int
    joint_names : list of str
    joint_limits : Tensor, shape (n_joints, 2), float64 -- ``(low, high)`` in radians.
    name : str
    """

    def __init__(self, *, joint_limits: Tensor, joint_names: list[str], name: str,
                 dh: Tensor | None = None, tool: Tensor | None = None, pk_chain=None,
                 pk_frames: list[str] | None = None, urdf_text: str | None = None):
        # use the from_* constructors; they check the arguments
        self.joint_limits, self.joint_names, self.name = joint_limits, joint_names, name
        self.n_joints = len(joint_names)
        self._dh, self._tool = dh, tool
        self._pk, self._pk_frames, self._urdf_text = pk_chain, pk_frames, urdf_text

    def __repr__(self) -> str:
        kind = "dh" if self._dh is not None else "urdf"
        return f"KinematicChain(name={self.name!r}, n_joints={self.n_joints}, from={kind})"

    # -- constructors -------------------------------------------------------------------------------
    @classmethod
    def from_dh(cls, dh, *, joint_limits, tool=None, joint_names: list[str] | None = None,
                name: str = "dh") -> KinematicChain:
        """A chain of revolute joints from a modified (Craig) DH table.

        Parameters
        ----------
        dh : array-like, shape (n_joints, 4)
            Rows ``(a_{i-1} [m], alpha_{i-1} [rad], d_i [m], theta_offset_i [rad])``.
        joint_limits : array-like, shape (n_joints, 2)
            ``(low, high)`` in radians, ``low < high``.
        tool : array-like, shape (4, 4) or (4,), optional
            A fixed transform after the last joint frame (the flange or a gripper), or one DH row
            ``(a, alpha, d, theta)`` applied as a fixed joint. None: the last joint frame.
        joint_names : list of str, optional
            Defaults to ``joint1 .. jointN``.
        name : str
        """
        table = _as_float64(dh, "dh", "(n_joints, 4)")
        if table.ndim != 2 or table.shape[1] != 4 or table.shape[0] == 0:
            raise ValueError(f"dh must have shape (n_joints, 4), rows (a, alpha, d, theta_offset); "
                             f"got shape {tuple(table.shape)}")
        n = table.shape[0]
        limits = _check_limits(joint_limits, n)
        if tool is not None:
            tool = _as_float64(tool, "tool", "(4, 4) or (4,)")
            if tool.shape == (4,):
                tool = _dh_transform(*tool.unbind())
            elif tool.shape != (4, 4):
                raise ValueError(f"tool must be a 4x4 transform or one DH row (a, alpha, d, theta); "
                                 f"got shape {tuple(tool.shape)}")
            R = tool[:3, :3]
            if (not torch.allclose(R.T @ R, torch.eye(3, dtype=R.dtype), atol=1e-6)
                    or torch.det(R) < 0 or not torch.equal(tool[3], tool.new_tensor([0, 0, 0, 1]))):
                raise ValueError("tool must be a rigid transform: an orthonormal rotation with "
                                 "det +1 and last row (0, 0, 0, 1)")
        names = [f"joint{i + 1}" for i in range(n)] if joint_names is None else list(joint_names)
        if len(names) != n or len(set(names)) != n or not all(isinstance(s, str) and s for s in names):
            raise ValueError(f"joint_names must be {n} distinct non-empty strings, one per dh row; "
                             f"got {joint_names!r}")
        return cls(joint_limits=limits, joint_names=names, name=str(name), dh=table, tool=tool)

    @classmethod
    def from_urdf(cls, urdf, end_link: str, *, root_link: str | None = None) -> KinematicChain:
        """The serial chain from ``root_link`` (default: the root of the tree) to ``end_link``.

        Needs ``pytorch_kinematics``. Revolute joints keep their URDF limits, continuous joints get
        ``[-pi, pi]``, fixed joints are folded in; other joint types raise ``ValueError``.

        Parameters
        ----------
        urdf : str or path-like
            A path to a ``.urdf`` file, or the URDF XML text.
        end_link, root_link : str
            Link names.
        """
        if isinstance(urdf, str) and urdf.lstrip().startswith("<"):
            text = urdf
        else:
            path = os.fspath(urdf)
            if not os.path.isfile(path):
                raise ValueError(f"urdf={path!r} is neither a file nor URDF XML text")
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        robot, links, joint_of_child = _parse_urdf(text)
        for what, link in (("end_link", end_link), ("root_link", root_link)):
            if link is not None and link not in links:
                raise ValueError(f"{what}={link!r} is not a link of this URDF; links: {links}")
        path_joints, link = [], end_link
        while link in joint_of_child and link != root_link:
            path_joints.insert(0, joint_of_child[link])
            link = joint_of_child[link]["parent"]
        if root_link is not None and link != root_link:
            raise ValueError(f"root_link={root_link!r} is not an ancestor of end_link={end_link!r}")
        base, moving = link, []
        for j in path_joints:
            if j["type"] in ("revolute", "continuous"):
                moving.append(j)
            elif j["type"] != "fixed":
                raise ValueError(f"joint {j['name']!r} is {j['type']}; only revolute, continuous and "
                                 "fixed joints are supported")
        if not moving:
            raise ValueError(f"no revolute joint between {base!r} and end_link={end_link!r}")
        for j in moving:
            if j["type"] == "continuous":
                j["limits"] = (-math.pi, math.pi)
            elif j["limits"] is None:
                raise ValueError(f"revolute joint {j['name']!r} has no <limit lower upper>; add one")
        limits = _check_limits([j["limits"] for j in moving], len(moving), name="the URDF joint limits")
        try:
            import pytorch_kinematics as pk
        except ImportError as err:
            raise ImportError("KinematicChain.from_urdf needs pytorch_kinematics: "
                              "pip install pytorch-kinematics") from err
        try:
            full = pk.build_chain_from_urdf(text).to(dtype=torch.float64)
            for j in path_joints:  # exact float64 origins and axes (pk parses them in float32)
                frame = full.find_frame(j["child"])
                T = _transform_from_origin(np.array(j["xyz"]), np.array(j["rpy"]))
                frame.joint.offset = pk.Transform3d(matrix=torch.from_numpy(T), dtype=torch.float64)
                axis = torch.tensor(j["axis"], dtype=torch.float64)
                frame.joint.axis = axis / axis.norm()
            chain = pk.SerialChain(full, end_link, base, dtype=torch.float64)
        except Exception as err:  # pk raises many kinds of errors for broken files
            raise ValueError(f"pytorch_kinematics could not build the chain {base!r} -> {end_link!r}: "
                             f"{err}") from err
        frames = [base] + [j["child"] for j in moving] + [end_link]
        return cls(joint_limits=limits, joint_names=[j["name"] for j in moving],
                   name=robot, pk_chain=chain, pk_frames=frames, urdf_text=text)

    # -- checks -------------------------------------------------------------------------------------
    def _check_q(self, q, name: str = "q") -> tuple[Tensor, bool]:
        """``q`` as a float tensor of shape (B, n) and whether it was one configuration."""
        if not torch.is_tensor(q):
            q = torch.as_tensor(np.asarray(q, dtype=np.float64))
        if not q.is_floating_point():
            q = q.to(torch.float64)
        if q.ndim not in (1, 2) or q.shape[-1] != self.n_joints:
            raise ValueError(f"{name} must have shape (B, {self.n_joints}) or ({self.n_joints},): one "
                             f"angle per joint of {self.name!r}; got shape {tuple(q.shape)}")
        check_finite(q, name)
        return (q[None], True) if q.ndim == 1 else (q, False)

    # -- kinematics ---------------------------------------------------------------------------------
    def frames(self, q) -> Tensor:
        """Frames along the arm, for plots: ``(B, n_joints + 2, 4, 4)`` -- the base (identity),
        every joint frame, then the end effector, as transforms into the base frame."""
        q, single = self._check_q(q)
        if self._dh is not None:
            dh = self._dh.to(q)
            local = _dh_transform(dh[:, 0], dh[:, 1], dh[:, 2], q + dh[:, 3])  # (B, n, 4, 4)
            out = [torch.eye(4, dtype=q.dtype, device=q.device).expand(q.shape[0], 4, 4)]
            for i in range(self.n_joints):
                out.append(out[-1] @ local[:, i])
            out.append(out[-1] @ self._tool.to(q) if self._tool is not None else out[-1])
            T = torch.stack(out, 1)
        else:
            T_all = self._pk_chain(q.device).forward_kinematics_tensor(q.to(torch.float64))
            idx = self._pk.get_frame_indices(*self._pk_frames)
            T = T_all[idx.to(T_all.device)].transpose(0, 1).to(q.dtype)
        return T[0] if single else T

    def forward(self, q) -> tuple[Tensor, Tensor]:
        """End-effector pose in the base frame: position ``(B, 3)`` [m] and rotation ``(B, 3, 3)``.
        Differentiable in ``q``."""
        T = self.frames(q)[..., -1, :, :]
        return T[..., :3, 3], T[..., :3, :3]

    __call__ = forward

    def jacobian(self, q) -> Tensor:
        """Geometric Jacobian ``(B, 6, n_joints)``: rows [linear velocity; angular velocity] of the
        end effector in the base frame, ``[v; w] = J dq/dt``."""
        q, single = self._check_q(q)
        J = self._pose_jacobian(q)[1]
        return J[0] if single else J

    def _pose_jacobian(self, q: Tensor) -> tuple[Tensor, Tensor]:
        """End-effector transforms (B, 4, 4) and Jacobians (B, 6, n) of a checked (B, n) ``q``."""
        if self._dh is None:
            J, T = self._pk_chain(q.device).jacobian(q.to(torch.float64), ret_eef_pose=True)
            return T.to(q.dtype), J.to(q.dtype)
        T = self.frames(q)
        z, p = T[:, 1:-1, :3, 2], T[:, 1:-1, :3, 3]  # joint axes and origins, (B, n, 3)
        return T[:, -1], torch.cat([torch.linalg.cross(z, T[:, -1:, :3, 3] - p), z], -1).transpose(1, 2)

    def _pk_chain(self, device: torch.device):
        if torch.device(self._pk.device) != device:
            self._pk = self._pk.to(device=device)
        return self._pk

    # -- joint space --------------------------------------------------------------------------------
    def sample_configurations(self, n: int, *, generator: torch.Generator | None = None,
                              dtype: torch.dtype = torch.float64) -> Tensor:
        """``n`` configurations drawn uniformly within the joint limits: ``(n, n_joints)``."""
        n = check_int(n, "n")
        u = torch.rand(n, self.n_joints, generator=generator, dtype=torch.float64)
        low, high = self.joint_limits.unbind(-1)
        return (low + (high - low) * u).to(dtype)

    def within_limits(self, q, tol: float = 1e-6) -> Tensor:
        """Whether each configuration respects every joint limit (up to ``tol`` rad): ``(B,)`` bool."""
        q, single = self._check_q(q)
        lim = self.joint_limits.to(q)
        ok = ((q >= lim[:, 0] - tol) & (q <= lim[:, 1] + tol)).all(-1)
        return ok[0] if single else ok

    def to_urdf(self) -> str:
        """A URDF text of the same robot, for other tools. Links are ``base_link``, ``link1`` ..
        ``linkN`` (the DH frames) and ``end_effector``; the URDF gives no effort or velocity limit,
        so those are written as 0. A chain read from a URDF returns that text."""
        if self._dh is None:
            return self._urdf_text
        num = lambda values: " ".join(repr(float(v)) for v in values)  # noqa: E731 (17 digits)
        links = ["base_link"] + [f"link{i + 1}" for i in range(self.n_joints)] + ["end_effector"]
        parts = [f"<robot name={quoteattr(self.name)}>"] + [f'  <link name="{n}"/>' for n in links]
        origins = [_dh_transform(*row.unbind()).numpy() for row in self._dh]
        tool = self._tool.numpy() if self._tool is not None else np.eye(4)
        for i, T in enumerate(origins + [tool]):
            moving = i < self.n_joints
            jname = self.joint_names[i] if moving else "end_effector_joint"
            parts.append(f'  <joint name={quoteattr(jname)} type="{"revolute" if moving else "fixed"}">\n'
                         f'    <parent link="{links[i]}"/>\n    <child link="{links[i + 1]}"/>\n'
                         f'    <origin xyz="{num(T[:3, 3])}" rpy="{num(_rpy(T[:3, :3]))}"/>')
            if moving:
                low, high = self.joint_limits[i].tolist()
                parts.append(f'    <axis xyz="0 0 1"/>\n    <limit lower="{low!r}" upper="{high!r}" '
                             'effort="0" velocity="0"/>')
            parts.append("  </joint>")
        return "\n".join(parts + ["</robot>", ""])


def panda() -> KinematicChain:
    """The Franka Emika Panda (7 joints) from its published modified-DH table and joint limits
    (Franka Emika, "Robot and interface specifications"); the end effector is the flange,
    0.107 m past joint 7 (no hand)."""
    half = math.pi / 2
    dh = [(0.0, 0.0, 0.333, 0.0), (0.0, -half, 0.0, 0.0), (0.0, half, 0.316, 0.0),
          (0.0825, half, 0.0, 0.0), (-0.0825, -half, 0.384, 0.0), (0.0, half, 0.0, 0.0),
          (0.088, half, 0.0, 0.0)]
    limits = [(-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, -0.0698),
              (-2.8973, 2.8973), (-0.0175, 3.7525), (-2.8973, 2.8973)]
    return KinematicChain.from_dh(dh, joint_limits=limits, tool=(0.0, 0.0, 0.107, 0.0),
                                  joint_names=[f"panda_joint{i}" for i in range(1, 8)], name="panda")


# -- inverse kinematics -----------------------------------------------------------------------------
def _check_target(x, name: str, event: tuple[int, ...], batch: int, optional: bool = False):
    if x is None and optional:
        return None
    t = _as_float64(x, name, f"(B, {', '.join(map(str, event))})")
    if tuple(t.shape[-len(event):]) != event or t.ndim > len(event) + 1 or (
            t.ndim == len(event) + 1 and t.shape[0] not in (1, batch)):
        shape = ", ".join(map(str, event))
        raise ValueError(f"{name} must have shape ({batch}, {shape}) or ({shape}) to match the "
                         f"{batch} configuration(s) in q; got shape {tuple(t.shape)}")
    return t.expand(batch, *event)


def pose_errors(chain: KinematicChain, q, target_position, target_rotation=None
                ) -> tuple[Tensor, Tensor | None]:
    """Distance of the end effector from a target pose, in float64.

    Returns ``(position_error, rotation_error)``: ``|p - p_target|`` in metres, shape ``(B,)``, and
    the geodesic angle ``|log(R_target R^T)|`` in radians, ``(B,)``, or None without a rotation.
    """
    q, single = chain._check_q(q)
    p_t = _check_target(target_position, "target_position", (3,), q.shape[0]).to(q.device)
    R_t = _check_target(target_rotation, "target_rotation", (3, 3), q.shape[0], True)
    with torch.no_grad():
        p, R = chain.forward(q.detach().to(torch.float64))
        pos = (p - p_t).norm(dim=-1)
        rot = None if R_t is None else _rotvec(R_t.to(q.device) @ R.transpose(-1, -2)).norm(dim=-1)
    if single:
        return pos[0], None if rot is None else rot[0]
    return pos, rot


def refine_ik(chain: KinematicChain, q, target_position, target_rotation=None, *, steps: int = 10,
              damping: float = 1e-2, rotation_weight: float = 0.1, clamp: bool = True) -> Tensor:
    """Move configurations ``q`` toward a target end-effector pose by damped least squares.

    Each step is ``dq = J^T (J J^T + damping^2 I)^-1 e`` (Wampler 1986; Nakamura & Hanafusa 1986)
    with the error ``e = [p_target - p; rotation_weight * log(R_target R^T)]`` (the rotation error as
    an axis-angle vector in the base frame, matched by the weighted angular rows of ``J``); without
    ``target_rotation`` only the position rows are used. Computed in float64 without gradients.

    Parameters
    ----------
    chain : KinematicChain
    q : Tensor, shape (B, n_joints) or (n_joints,)
        Seeds.
    target_position : array-like, shape (B, 3) or (3,)
    target_rotation : array-like, shape (B, 3, 3) or (3, 3), optional
    steps : int
    damping : float
        ``lambda`` in metres; larger is slower but steadier near singularities.
    rotation_weight : float
        Metres per radian of rotation error.
    clamp : bool
        Clamp to the joint limits after every step.

    Returns
    -------
    Tensor, the shape and dtype of ``q``.
    """
    q, single = chain._check_q(q)
    steps = check_int(steps, "steps", minimum=0)
    for value, arg, low in ((damping, "damping", "> 0"), (rotation_weight, "rotation_weight", ">= 0")):
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value < 0 or (value == 0 and arg == "damping")):
            raise ValueError(f"{arg}={value!r} must be a finite number {low}")
    p_t = _check_target(target_position, "target_position", (3,), q.shape[0]).to(q.device)
    R_t = _check_target(target_rotation, "target_rotation", (3, 3), q.shape[0], True)
    R_t = None if R_t is None else R_t.to(q.device)
    with torch.no_grad():
        x = q.detach().to(torch.float64)
        lim = chain.joint_limits.to(x)
        for _ in range(steps):
            T, J = chain._pose_jacobian(x)
            e = p_t - T[:, :3, 3]
            if R_t is None:
                J = J[:, :3]
            else:
                J = torch.cat([J[:, :3], rotation_weight * J[:, 3:]], 1)
                e = torch.cat([e, rotation_weight * _rotvec(R_t @ T[:, :3, :3].transpose(1, 2))], 1)
            A = J @ J.transpose(1, 2) + damping**2 * torch.eye(J.shape[1], dtype=x.dtype, device=x.device)
            x = x + (J.transpose(1, 2) @ torch.linalg.solve(A, e[..., None]))[..., 0]
            if clamp:
                x = torch.clamp(x, lim[:, 0], lim[:, 1])
    x = x.to(q.dtype)
    return x[0] if single else x
