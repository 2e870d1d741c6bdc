"""The torch runner for the bundled TFLite face models, and the face-tracking helpers built on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aenerf_ns.faces.face_tracking import MODEL_DIR, detect_faces, face_mesh, person_masks, roi_from_detection
from aenerf_ns.faces.tflite_graph import TFLiteGraph, TFLiteGraphError


@pytest.mark.parametrize("name", ["face_detection_short_range", "face_landmark"])
def test_torch_graph_matches_the_tflite_runtime(name):
    """Same outputs as TensorFlow Lite's own interpreter on random inputs (the segmenter's custom op is
    not in that runtime; it is checked on a real picture below)."""
    tfl = pytest.importorskip("tflite_runtime.interpreter", reason="tflite-runtime (test extra) not installed")
    path = MODEL_DIR / f"{name}.tflite"
    graph = TFLiteGraph(path).eval()
    reference = tfl.Interpreter(model_path=str(path))
    reference.allocate_tensors()
    shape = reference.get_input_details()[0]["shape"]
    x = np.random.default_rng(0).uniform(-1, 1, size=(3, *shape[1:])).astype(np.float32)
    with torch.inference_mode():
        ours = [o.numpy() for o in graph(torch.from_numpy(x))]
    for b in range(3):
        reference.set_tensor(reference.get_input_details()[0]["index"], x[b : b + 1])
        reference.invoke()
        for detail, mine in zip(reference.get_output_details(), ours):
            expected = reference.get_tensor(detail["index"])[0]
            scale = np.abs(expected).max() + 1e-6
            assert np.abs(mine[b] - expected).max() < 1e-4 * scale + 1e-5, detail["name"]


def test_damaged_or_missing_model_is_reported(tmp_path):
    with pytest.raises(TFLiteGraphError, match="does not exist"):
        TFLiteGraph(tmp_path / "none.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(TFLiteGraphError):
        TFLiteGraph(bad)


@pytest.fixture(scope="module")
def face_photo() -> np.ndarray:
    """A real face photo shipped with scikit-image (offline)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def test_real_photo_detection_mesh_and_segmentation(face_photo):
    (dets,) = detect_faces([face_photo])
    assert len(dets) == 1 and dets.scores[0] > 0.8
    x0, y0, x1, y1 = dets.boxes[0]
    assert 150 < (x0 + x1) / 2 < 260 and 60 < (y0 + y1) / 2 < 160  # the astronaut's face, upper middle
    landmarks, presence = face_mesh([face_photo], [roi_from_detection(dets)])
    assert presence[0] > 0.9
    lm = landmarks[0]
    assert lm[33, 0] < lm[263, 0], "the subject's right eye appears on the image's left"
    assert lm[10, 1] < lm[1, 1] < lm[13, 1] < lm[152, 1], "forehead, nose, lips, chin from top to bottom"
    assert (x0 - 10 < lm[:, 0]).all() and (lm[:, 0] < x1 + 10).all()
    mask = person_masks([face_photo])[0]
    h, w = face_photo.shape[:2]
    centre = mask[int(256 * lm[1, 1] / h), int(256 * lm[1, 0] / w)]
    assert centre > 0.9, "the nose is on the person"
    assert 0.15 < (mask > 0.5).mean() < 0.85


def test_batches_give_the_same_answer_as_single_images(face_photo):
    flipped = np.ascontiguousarray(face_photo[:, ::-1])
    both = detect_faces([face_photo, flipped])
    single = detect_faces([flipped])
    np.testing.assert_allclose(both[1].boxes, single[0].boxes, atol=1e-3)
    # A mirrored face is detected at the mirrored place.
    w = face_photo.shape[1]
    np.testing.assert_allclose(both[1].boxes[0, [2, 0]], w - both[0].boxes[0, [0, 2]], atol=6)


def test_bundled_models_match_their_published_checksums():
    import hashlib

    readme = (MODEL_DIR / "README.md").read_text()
    for path in Path(MODEL_DIR).glob("*.tflite"):
        assert hashlib.sha256(path.read_bytes()).hexdigest() in readme, path.name
