"""The on-disk talking-head dataset format: reading, validating and writing `transforms.json`.

A dataset is one folder per identity::

    transforms.json        intrinsics, fps, audio file, per-frame poses and file paths
    images/00000.png       RGB frames, all the same size
    parsing/00000.png      uint8 label maps (ids in aenerf_ns.data.parsing_labels.LABEL_NAMES)
    background.png         static background plate (the camera does not move)
    audio.wav              the clip's speech (any sample rate or channel count; resampled on load)
    cache/                 computed audio features (safe to delete)

`transforms.json` follows nerfstudio's conventions: `transform_matrix` is camera-to-world in OpenGL
convention (camera looks along -z, y up), expressed in *head coordinates* (origin at the head centre,
+z out of the face, one unit about half the head height). The head therefore stays still and the camera
moves around it, which is what makes a talking head a static scene plus audio-driven motion. Frame `i`
shows time `i / fps` of the audio track.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aenerf_ns.data.parsing_labels import LABEL_NAMES
from aenerf_ns.utils.atomic_io import atomic_write_bytes

FORMAT_VERSION = 1
"""Version written into every transforms.json."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""File endings counted as frames in an image folder."""


class DatasetFormatError(ValueError):
    """The dataset folder does not follow the talking-head format; the message says what and where."""


@dataclass
class FrameRecord:
    """One video frame of a dataset."""

    image_path: Path
    """Absolute path of the RGB frame."""
    parsing_path: Path
    """Absolute path of the label map."""
    camera_to_world: np.ndarray
    """4x4 camera-to-world matrix in head coordinates."""
    mouth_open: float | None = None
    """Ground-truth mouth opening in [0, 1] where known (synthetic data)."""


@dataclass
class TalkingHeadMeta:
    """Everything transforms.json says about a dataset, with paths made absolute."""

    root: Path
    """Dataset folder."""
    identity: str
    """Name of the person."""
    fps: float
    """Video frame rate."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    fl_x: float
    """Focal length along x in pixels."""
    fl_y: float
    """Focal length along y in pixels."""
    cx: float
    """Principal point x in pixels."""
    cy: float
    """Principal point y in pixels."""
    audio_path: Path
    """Speech audio of the clip."""
    background_path: Path | None
    """Static background plate, if the dataset has one."""
    frames: list[FrameRecord] = field(default_factory=list)
    """Frames in time order."""
    label_names: tuple[str, ...] = LABEL_NAMES
    """Parsing classes used by the label maps."""

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


def write_transforms(meta: TalkingHeadMeta) -> Path:
    """Write `meta` as transforms.json in its root folder (atomically) and return the path."""
    root = meta.root

    def rel(p: Path) -> str:
        return os.path.relpath(p, root)

    doc: dict[str, Any] = {
        "format": "aenerf_ns.talking_head",
        "version": FORMAT_VERSION,
        "identity": meta.identity,
        "fps": meta.fps,
        "camera_model": "PINHOLE",
        "w": meta.width,
        "h": meta.height,
        "fl_x": meta.fl_x,
        "fl_y": meta.fl_y,
        "cx": meta.cx,
        "cy": meta.cy,
        "audio_path": rel(meta.audio_path),
        "parsing_labels": {name: i for i, name in enumerate(meta.label_names)},
        "frames": [],
    }
    if meta.background_path is not None:
        doc["background_path"] = rel(meta.background_path)
    for i, fr in enumerate(meta.frames):
        entry: dict[str, Any] = {
            "frame_index": i,
            "file_path": rel(fr.image_path),
            "parsing_path": rel(fr.parsing_path),
            "transform_matrix": np.asarray(fr.camera_to_world, dtype=float).round(8).tolist(),
        }
        if fr.mouth_open is not None:
            entry["mouth_open"] = round(float(fr.mouth_open), 6)
        doc["frames"].append(entry)
    path = root / "transforms.json"
    atomic_write_bytes(path, json.dumps(doc, indent=1).encode())
    return path


def _require(doc: dict, key: str, where: str) -> Any:
    if key not in doc:
        raise DatasetFormatError(f"{where} is missing the required key '{key}'")
    return doc[key]


def _number(doc: dict, key: str, where: str, positive: bool = True) -> float:
    value = _require(doc, key, where)
    if not isinstance(value, (int, float)) or not math.isfinite(value) or (positive and value <= 0):
        raise DatasetFormatError(f"{where}: '{key}' must be a {'positive ' if positive else ''}number, got {value!r}")
    return float(value)


def _check_pose(matrix: Any, where: str) -> np.ndarray:
    try:
        m = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{where}: transform_matrix is not numeric ({exc})") from None
    if m.shape != (4, 4):
        raise DatasetFormatError(f"{where}: transform_matrix must be 4x4, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise DatasetFormatError(f"{where}: transform_matrix contains NaN or infinity")
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-5):
        raise DatasetFormatError(f"{where}: transform_matrix's last row must be [0, 0, 0, 1], got {m[3].tolist()}")
    rot = m[:3, :3]
    if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-3) or np.linalg.det(rot) < 0:
        raise DatasetFormatError(f"{where}: transform_matrix's rotation is not a proper rotation matrix")
    return m


def _load_transforms_document(root: Path) -> tuple[dict, Path]:
    """The JSON object in `root`/transforms.json, and its path."""
    if not root.exists():
        raise DatasetFormatError(f"dataset folder {root} does not exist")
    path = root / "transforms.json"
    if not path.is_file():
        raise DatasetFormatError(
            f"{path} not found: a talking-head dataset needs a transforms.json "
            "(make one with `aenerf-synth-data` or from a video with `aenerf-process`)"
        )
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DatasetFormatError(f"{path} must hold a JSON object")
    return doc, path


def _check_parsing_labels(doc: dict, where: str) -> None:
    """The dataset's label ids must be the ones this version's label maps use."""
    labels = doc.get("parsing_labels", {name: i for i, name in enumerate(LABEL_NAMES)})
    unknown = sorted(set(labels) - set(LABEL_NAMES))
    if unknown:
        raise DatasetFormatError(f"{where}: unknown parsing labels {unknown}; known labels are {list(LABEL_NAMES)}")
    for name, idx in labels.items():
        if LABEL_NAMES.index(name) != idx:
            raise DatasetFormatError(
                f"{where}: parsing label '{name}' has id {idx}, but this version expects id {LABEL_NAMES.index(name)}"
            )


def _read_clip_header(root: Path, doc: dict, where: str) -> TalkingHeadMeta:
    """The clip-wide fields (identity, fps, intrinsics, audio, background plate), with no frames yet."""
    audio_path = root / str(_require(doc, "audio_path", where))
    if not audio_path.is_file():
        raise DatasetFormatError(f"{where}: audio file {audio_path} does not exist")
    background = doc.get("background_path")
    background_path = root / background if background else None
    if background_path is not None and not background_path.is_file():
        raise DatasetFormatError(f"{where}: background plate {background_path} does not exist")
    return TalkingHeadMeta(
        root=root,
        identity=str(doc.get("identity", root.name)),
        fps=_number(doc, "fps", where),
        width=int(_number(doc, "w", where)),
        height=int(_number(doc, "h", where)),
        fl_x=_number(doc, "fl_x", where),
        fl_y=_number(doc, "fl_y", where),
        cx=_number(doc, "cx", where, positive=False),
        cy=_number(doc, "cy", where, positive=False),
        audio_path=audio_path,
        background_path=background_path,
    )


def _read_frame(root: Path, entry: dict, i: int, where: str) -> FrameRecord:
    """Frame `i` of the frames list: in time order, with a rigid pose and its image and label map on disk."""
    fwhere = f"{where}, frame {i}"
    if entry.get("frame_index", i) != i:
        raise DatasetFormatError(
            f"{fwhere}: frame_index is {entry.get('frame_index')}, expected {i} (frames must be consecutive "
            "and in time order, one per video frame)"
        )
    if "transform_matrix" not in entry:
        raise DatasetFormatError(f"{fwhere}: no transform_matrix (every frame needs a camera pose)")
    image_path = root / str(_require(entry, "file_path", fwhere))
    parsing_path = root / str(_require(entry, "parsing_path", fwhere))
    for p, what in ((image_path, "image"), (parsing_path, "parsing map")):
        if not p.is_file():
            raise DatasetFormatError(f"{fwhere}: {what} {p} does not exist")
    mouth = entry.get("mouth_open")
    return FrameRecord(image_path, parsing_path, _check_pose(entry["transform_matrix"], fwhere), mouth)


def _check_image_count(meta: TalkingHeadMeta, where: str) -> None:
    """When all frames share one folder, it must hold exactly the listed frames (no missing or extra images)."""
    folders = {fr.image_path.parent for fr in meta.frames}
    if len(folders) == 1:
        folder = folders.pop()
        on_disk = sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if on_disk != meta.num_frames:
            raise DatasetFormatError(
                f"{where}: {folder.name}/ holds {on_disk} image files but transforms.json lists {meta.num_frames} "
                "frames: frames and poses do not match (re-run the tool that wrote the dataset)"
            )


def read_transforms(root: Path) -> TalkingHeadMeta:
    """Read and validate a dataset folder's transforms.json.

    Raises DatasetFormatError naming the file and the field for every problem found: a missing folder or
    file, malformed JSON, missing or invalid intrinsics, poses that are not rigid transforms, frame
    indices out of order, unknown parsing labels, and files listed but absent.
    """
    root = Path(root)
    doc, path = _load_transforms_document(root)
    where = str(path)
    _check_parsing_labels(doc, where)
    meta = _read_clip_header(root, doc, where)
    frames = _require(doc, "frames", where)
    if not isinstance(frames, list) or not frames:
        raise DatasetFormatError(f"{where}: 'frames' must be a non-empty list")
    meta.frames.extend(_read_frame(root, entry, i, where) for i, entry in enumerate(frames))
    _check_image_count(meta, where)
    return meta
