"""How far the mouth is open in every frame, read from the frames' parsing maps.

Every talking-head dataset here has a mouth-interior class in its parsing maps (the synthetic renderer's
mouth cavity, `aenerf-process`'s inner-lip contour of the face mesh), so the opening of each frame is known
without a separate tracker: the square root of the mouth interior's share of the face (lower face, upper
face and mouth), a length-like number that does not depend on the image size or on how much of the picture
the face fills. Models use it as a direct target for their audio code (`AudioDrivenModel`).

Reading every parsing map costs a few milliseconds a frame, so the track is cached beside the audio
features, keyed by the maps' names, sizes and modification times.

A clip processed by `aenerf-process` also holds its face-mesh landmarks (`landmarks.npy`); their inner-lip gap
over the outer-eye-corner distance (`landmark_mouth_track`) is the opening `aenerf-eval` scores renders by, and
on a real clip it follows the speech more closely than the parsing map's mouth area, whose contour includes
the lips' inner edge and wavers with the lighting.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from jaxtyping import Float, UInt8
from PIL import Image

from aenerf_ns.data.parsing_labels import FACE_LOWER, FACE_UPPER, MOUTH_INTERIOR
from aenerf_ns.faces.face_tracking import lip_gap_ratio
from aenerf_ns.utils.atomic_io import atomic_write_bytes


def opening_from_labels(labels: UInt8[np.ndarray, "h w"]) -> float:
    """sqrt(mouth-interior pixels / face pixels) of one label map (0 where no face is labelled)."""
    mouth = int((labels == MOUTH_INTERIOR).sum())
    face = mouth + int(np.isin(labels, (FACE_LOWER, FACE_UPPER)).sum())
    return float(np.sqrt(mouth / face)) if face else 0.0


def _cache_key(paths: list[Path]) -> str:
    h = hashlib.sha256(b"mouth-track-v1")
    for p in paths:
        st = Path(p).stat()
        h.update(f"{Path(p).name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:20]


def mouth_track(parsing_paths: list[Path], cache_dir: Path | None = None) -> Float[np.ndarray, "n"]:
    """The mouth opening of every frame whose parsing map is in `parsing_paths` (in that order)."""
    paths = [Path(p) for p in parsing_paths]
    cache = Path(cache_dir) / f"mouth_track_{_cache_key(paths)}.json" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        values = json.loads(cache.read_text())
        if len(values) == len(paths):
            return np.asarray(values, dtype=np.float32)
    # rounded as the cache stores them, so a track read back equals the one computed (identical models either way)
    values = [round(opening_from_labels(np.asarray(Image.open(p))), 6) for p in paths]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache, json.dumps(values).encode())
    return np.asarray(values, dtype=np.float32)


def landmark_mouth_track(landmarks: Float[np.ndarray, "n 468 3"]) -> Float[np.ndarray, "n"]:
    """Inner-lip gap over the outer-eye-corner distance of every frame's face mesh (`lip_gap_ratio`); frames
    without landmarks (NaN) take the value interpolated from their neighbours."""
    track = lip_gap_ratio(np.asarray(landmarks, dtype=np.float64))
    known = np.isfinite(track)
    if not known.any():
        raise ValueError("no frame of the clip has face-mesh landmarks")
    frames = np.arange(len(track))
    return np.interp(frames, frames[known], track[known]).astype(np.float32)
