"""An analytic 3D talking head, ray-cast in numpy, for the bundled synthetic sample.

The head is a set of ellipsoids in *head coordinates* (origin at the head centre, y up, the face looking
along +z, one unit is about half the head height): skull, hair shell, eyes, brows, nose, ears, lips, a jaw
and a mouth cavity whose size follows the mouth opening. Neck and torso live in *world coordinates* and do
not move with the head. A static camera looks at the person; the head moves by small per-frame rotations
and translations about the neck.

Because every pixel is an exact ray intersection with the same 3D shapes, the frames are multi-view
consistent: a point of the head projects to the same surface in every frame, which is what a NeRF needs
and what the tests check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from jaxtyping import Float

from aenerf_ns.data import parsing_labels as L

NECK_PIVOT = np.array([0.0, -0.75, 0.0])
"""Point (head and world coordinates agree at rest) that the head rotates about."""
LIGHT_DIR = np.array([0.3, 0.45, 1.0]) / np.linalg.norm([0.3, 0.45, 1.0])


@dataclass(frozen=True)
class Identity:
    """Appearance of one synthetic person."""

    name: str
    """Identity name written into the dataset."""
    skin: tuple[float, float, float]
    """Skin RGB in [0, 1]."""
    hair: tuple[float, float, float]
    """Hair and brow RGB."""
    shirt: tuple[float, float, float]
    """Torso RGB."""
    lips: tuple[float, float, float]
    """Lip RGB."""
    scale: tuple[float, float, float]
    """Per-axis head shape scale."""
    background: tuple[tuple[float, float, float], tuple[float, float, float]]
    """Top and bottom colours of the background gradient."""
    f0: float
    """Voice pitch in Hz."""
    seed: int
    """Seed of this identity's pose and speech."""


def make_identity(index: int, seed: int = 0) -> Identity:
    """Deterministic identity number `index`; index 0 is the default sample person."""
    rng = np.random.default_rng(seed * 1000 + index)
    tone = rng.uniform(0.0, 1.0)
    skin = tuple(np.clip(np.array([0.93, 0.76, 0.62]) * (1.0 - 0.45 * tone) + rng.uniform(-0.03, 0.03, 3), 0, 1))
    hair = tuple(rng.choice([[0.12, 0.08, 0.05], [0.35, 0.2, 0.08], [0.75, 0.6, 0.3], [0.25, 0.25, 0.28]]))
    shirt = tuple(rng.uniform(0.1, 0.8, 3))
    lips = tuple(np.clip(np.array(skin) * np.array([0.85, 0.45, 0.45]) + 0.05, 0, 1))
    scale = tuple(rng.uniform([0.92, 0.94, 0.92], [1.08, 1.06, 1.06]))
    top = tuple(rng.uniform(0.35, 0.9, 3))
    bottom = tuple(np.clip(np.array(top) * rng.uniform(0.4, 0.8), 0, 1))
    return Identity(
        name=f"synth{index:02d}",
        skin=skin,
        hair=hair,
        shirt=shirt,
        lips=lips,
        scale=scale,
        background=(top, bottom),
        f0=float(rng.uniform(100.0, 210.0)),
        seed=int(seed * 1000 + index),
    )


@dataclass
class StaticCamera:
    """The real, fixed pinhole camera (OpenGL convention: looks along -z, y up)."""

    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    focal: float
    """Focal length in pixels (square pixels)."""
    c2w: Float[np.ndarray, "4 4"] = field(default_factory=lambda: _translation([0.0, -0.25, 6.0]))
    """Camera-to-world transform."""

    @property
    def cx(self) -> float:
        return self.width / 2.0

    @property
    def cy(self) -> float:
        return self.height / 2.0

    @classmethod
    def square(cls, resolution: int) -> StaticCamera:
        """The sample's camera: the head and shoulders fill a square image."""
        return cls(width=resolution, height=resolution, focal=2.3 * resolution)

    def rays(self, supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """World ray origins and unit directions, (H*s, W*s, 3) each, pixel centres at half-integers."""
        s = supersample
        u = (np.arange(self.width * s) + 0.5) / s
        v = (np.arange(self.height * s) + 0.5) / s
        uu, vv = np.meshgrid(u, v)
        d_cam = np.stack([(uu - self.cx) / self.focal, -(vv - self.cy) / self.focal, -np.ones_like(uu)], -1)
        d = d_cam @ self.c2w[:3, :3].T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        o = np.broadcast_to(self.c2w[:3, 3], d.shape)
        return o, d


def _translation(t) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = t
    return m


def rotation_xyz(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Rotation matrix from angles in radians (about x, then y, then z)."""
    cx, sx = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    cz, sz = np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def head_transform(pitch: float, yaw: float, roll: float, translation) -> Float[np.ndarray, "4 4"]:
    """Head-to-world transform: rotate about the neck pivot, then translate."""
    r = rotation_xyz(pitch, yaw, roll)
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = NECK_PIVOT + np.asarray(translation) - r @ NECK_PIVOT
    return m


def head_pose_track(num_frames: int, fps: float, seed: int) -> Float[np.ndarray, "frames 4 4"]:
    """Smooth, natural-looking head motion: a few slow sinusoids per angle and axis."""
    rng = np.random.default_rng(seed + 17)
    t = np.arange(num_frames) / fps

    def wander(amplitude: float) -> np.ndarray:
        freqs = rng.uniform(0.05, 0.45, 3)
        phases = rng.uniform(0, 2 * np.pi, 3)
        weights = rng.uniform(0.5, 1.0, 3)
        x = sum(w * np.sin(2 * np.pi * f * t + p) for f, p, w in zip(freqs, phases, weights))
        return amplitude * x / weights.sum()

    deg = np.pi / 180.0
    pitch, yaw, roll = wander(5 * deg), wander(9 * deg), wander(3 * deg)
    trans = np.stack([wander(0.04), wander(0.02), wander(0.03)], -1)
    return np.stack([head_transform(pitch[i], yaw[i], roll[i], trans[i]) for i in range(num_frames)])


@dataclass
class _Ellipsoid:
    center: np.ndarray
    radii: np.ndarray
    label: int
    material: str
    clip: str = ""


def _mouth_layout(opening: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Centres and radii of the mouth parts (unscaled head coordinates) for a mouth opening in [0, 1]."""
    o = float(np.clip(opening, 0.0, 1.0))
    return {
        "cavity": (np.array([0.0, -0.385 - 0.07 * o, 0.555]), np.array([0.17, 0.025 + 0.11 * o, 0.085])),
        "upper_lip": (np.array([0.0, -0.33, 0.6]), np.array([0.19, 0.035, 0.07])),
        "lower_lip": (np.array([0.0, -0.43 - 0.14 * o, 0.585]), np.array([0.18, 0.04, 0.07])),
        "jaw": (np.array([0.0, -0.52 - 0.14 * o, 0.22]), np.array([0.45, 0.28, 0.45])),
    }


def mouth_anchor(identity: Identity, opening: float) -> Float[np.ndarray, "3"]:
    """A head-coordinate point on the front of the mouth cavity, visible whenever the mouth is open."""
    center, radii = _mouth_layout(opening)["cavity"]
    point = center + np.array([0.0, 0.0, radii[2]])
    return point * np.asarray(identity.scale)


def _head_parts(identity: Identity, opening: float) -> list[_Ellipsoid]:
    mouth = _mouth_layout(opening)
    parts = [
        _Ellipsoid(np.array([0.0, 0.05, 0.0]), np.array([0.62, 0.8, 0.66]), L.FACE_UPPER, "skin", "face"),
        _Ellipsoid(np.array([0.0, 0.1, -0.04]), np.array([0.66, 0.82, 0.7]), L.HAIR, "hair", "hair"),
        _Ellipsoid(*mouth["jaw"], L.FACE_LOWER, "skin"),
        _Ellipsoid(*mouth["cavity"], L.MOUTH_INTERIOR, "cavity"),
        _Ellipsoid(*mouth["upper_lip"], L.FACE_LOWER, "lips"),
        _Ellipsoid(*mouth["lower_lip"], L.FACE_LOWER, "lips"),
        _Ellipsoid(np.array([0.0, -0.02, 0.66]), np.array([0.08, 0.16, 0.12]), L.FACE_UPPER, "nose"),
    ]
    for side in (-1.0, 1.0):
        parts += [
            _Ellipsoid(np.array([0.22 * side, 0.16, 0.57]), np.array([0.09, 0.09, 0.09]), L.FACE_UPPER, "eye"),
            _Ellipsoid(np.array([0.22 * side, 0.31, 0.6]), np.array([0.12, 0.025, 0.05]), L.FACE_UPPER, "brow"),
            _Ellipsoid(np.array([0.62 * side, 0.0, 0.0]), np.array([0.06, 0.16, 0.1]), L.FACE_UPPER, "skin"),
        ]
    scale = np.asarray(identity.scale)
    for p in parts:
        p.center = p.center * scale
        p.radii = p.radii * scale
    return parts


def _body_parts() -> list[_Ellipsoid]:
    return [
        _Ellipsoid(np.array([0.0, -1.0, -0.05]), np.array([0.26, 0.4, 0.26]), L.TORSO, "skin"),
        _Ellipsoid(np.array([0.0, -1.8, -0.1]), np.array([1.25, 0.62, 0.5]), L.TORSO, "shirt"),
    ]


def _intersect(o: np.ndarray, d: np.ndarray, e: _Ellipsoid) -> tuple[np.ndarray, np.ndarray]:
    """Nearest positive hit distance (inf where missed) and the hit point."""
    oc = (o - e.center) / e.radii
    dd = d / e.radii
    a = np.sum(dd * dd, -1)
    b = 2.0 * np.sum(oc * dd, -1)
    c = np.sum(oc * oc, -1) - 1.0
    disc = b * b - 4 * a * c
    hit = disc > 0
    sq = np.sqrt(np.where(hit, disc, 0.0))
    t = (-b - sq) / (2 * a)
    t = np.where(hit & (t > 1e-4), t, np.inf)
    point = o + d * np.where(np.isfinite(t), t, 0.0)[..., None]
    if e.clip:
        t = np.where(_keep(point, e), t, np.inf)
    return t, point


def _keep(point: np.ndarray, e: _Ellipsoid) -> np.ndarray:
    rel = (point - e.center) / e.radii
    if e.clip == "hair":
        # Hair covers the top and the back of the head, leaving the face and ears free.
        return (rel[..., 1] > 0.42 - 0.25 * np.clip(-rel[..., 2], 0, 1)) | (rel[..., 2] < -0.35)
    return np.ones(point.shape[:-1], bool)


def _face_label(point_local: np.ndarray, identity: Identity) -> np.ndarray:
    """Skull skin below the nose and in front is lower face (audio region); the rest is upper face."""
    y = point_local[..., 1] / identity.scale[1]
    z = point_local[..., 2] / identity.scale[2]
    lower = (y < -0.2) & (z > 0.15)
    return np.where(lower, L.FACE_LOWER, L.FACE_UPPER)


def _shade(material: str, p_local: np.ndarray, normal_world: np.ndarray, e: _Ellipsoid, ident: Identity) -> np.ndarray:
    n = len(p_local)
    rel = (p_local - e.center) / e.radii
    if material in ("skin", "nose"):
        base = np.tile(np.asarray(ident.skin) * (0.93 if material == "nose" else 1.0), (n, 1))
        freckle = 1.0 + 0.05 * np.sin(23 * p_local[:, 0]) * np.sin(19 * p_local[:, 1]) * np.sin(17 * p_local[:, 2])
        base = base * freckle[:, None]
    elif material in ("hair", "brow"):
        strands = 1.0 + 0.15 * np.sin(60 * p_local[:, 0] + 9 * p_local[:, 1])
        base = np.asarray(ident.hair)[None] * strands[:, None]
    elif material == "lips":
        base = np.tile(np.asarray(ident.lips), (n, 1))
    elif material == "cavity":
        teeth = rel[:, 1] > 0.35
        base = np.where(teeth[:, None], np.array([0.92, 0.9, 0.85]), np.array([0.35, 0.05, 0.08]))
    elif material == "eye":
        forward = rel[:, 2]
        base = np.where((forward > 0.93)[:, None], np.array([0.05, 0.04, 0.03]), np.array([0.95, 0.95, 0.95]))
        base = np.where(((forward > 0.8) & (forward <= 0.93))[:, None], np.array([0.25, 0.45, 0.35]), base)
    elif material == "shirt":
        base = np.tile(np.asarray(ident.shirt), (n, 1))
    else:
        raise ValueError(material)
    lambert = 0.45 + 0.55 * np.clip(normal_world @ LIGHT_DIR, 0.0, 1.0)
    return np.clip(base * lambert[:, None], 0.0, 1.0)


def render_background(identity: Identity, width: int, height: int) -> np.ndarray:
    """Static background plate (image space: the real camera does not move), uint8 (H, W, 3)."""
    top, bottom = (np.asarray(c) for c in identity.background)
    v = (np.arange(height) + 0.5)[:, None, None] / height
    u = (np.arange(width) + 0.5)[None, :, None] / width
    img = np.broadcast_to(top * (1 - v) + bottom * v, (height, width, 3))
    rng = np.random.default_rng(identity.seed + 5)
    for _ in range(3):
        cu, cv, rad = rng.uniform(0, 1), rng.uniform(0, 0.6), rng.uniform(0.08, 0.2)
        blob = np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * rad**2))
        img = img * (1 - 0.25 * blob) + 0.25 * blob * rng.uniform(0.2, 1.0, 3)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_frame(
    identity: Identity,
    camera: StaticCamera,
    head_to_world: Float[np.ndarray, "4 4"],
    opening: float,
    background: np.ndarray | None = None,
    supersample: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one frame: RGB uint8 (H, W, 3) and parsing labels uint8 (H, W).

    RGB is supersampled `supersample`^2 times per pixel; the label of a pixel is the most frequent label
    among its subsamples.
    """
    s = supersample
    o_w, d_w = camera.rays(s)
    o_w = o_w.reshape(-1, 3)
    d_w = d_w.reshape(-1, 3)
    r, t = head_to_world[:3, :3], head_to_world[:3, 3]
    o_h = (o_w - t) @ r  # world -> head: R^T (x - t)
    d_h = d_w @ r

    best_t = np.full(len(d_w), np.inf)
    best_part = np.full(len(d_w), -1)
    parts = [(p, True) for p in _head_parts(identity, opening)] + [(p, False) for p in _body_parts()]
    points = []
    for i, (part, in_head) in enumerate(parts):
        hit_t, point = _intersect(o_h, d_h, part) if in_head else _intersect(o_w, d_w, part)
        closer = hit_t < best_t
        best_t = np.where(closer, hit_t, best_t)
        best_part = np.where(closer, i, best_part)
        points.append(point)

    if background is None:
        background = render_background(identity, camera.width, camera.height)
    bg = np.repeat(np.repeat(background.astype(np.float64) / 255.0, s, 0), s, 1).reshape(-1, 3)
    rgb = bg.copy()
    labels = np.zeros(len(d_w), np.int64)
    for i, (part, in_head) in enumerate(parts):
        sel = best_part == i
        if not sel.any():
            continue
        p = points[i][sel]
        normal = (p - part.center) / part.radii**2
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        normal_world = normal @ r.T if in_head else normal
        rgb[sel] = _shade(part.material, p, normal_world, part, identity)
        labels[sel] = _face_label(p, identity) if part.clip == "face" else part.label

    h, w = camera.height, camera.width
    rgb = rgb.reshape(h, s, w, s, 3).mean(axis=(1, 3))
    votes = np.eye(len(L.LABEL_NAMES))[labels].reshape(h, s, w, s, -1).sum(axis=(1, 3))
    label_img = votes.argmax(-1).astype(np.uint8)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), label_img
