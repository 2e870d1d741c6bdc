import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aenerf_ns.data import parsing_labels as L
from aenerf_ns.data.dataset_format import read_transforms
from aenerf_ns.synthetic.synthetic_head import make_identity, mouth_anchor


def _project(point_head, c2w, fx, fy, cx, cy):
    """Pixel (column, row) of a head-coordinate point seen by an OpenGL camera-to-world pose."""
    w2c = np.linalg.inv(c2w)
    p = w2c[:3, :3] @ point_head + w2c[:3, 3]
    assert p[2] < 0, "point must be in front of the camera"
    u = fx * p[0] / -p[2] + cx
    v = -fy * p[1] / -p[2] + cy
    return u, v


def test_files_and_labels(sample_dataset):
    meta = read_transforms(sample_dataset)
    assert meta.num_frames == 75 and meta.fps == 25
    labels = np.array(Image.open(meta.frames[0].parsing_path))
    image = np.array(Image.open(meta.frames[0].image_path))
    assert image.shape == (48, 48, 3) and labels.shape == (48, 48)
    present = set(np.unique(labels).tolist())
    assert {L.BACKGROUND, L.TORSO, L.HAIR, L.FACE_UPPER, L.FACE_LOWER} <= present
    opening = np.array([f.mouth_open for f in meta.frames])
    assert opening.min() < 0.05 and opening.max() > 0.5, "the mouth must both close and open in 3 s of speech"


def test_mouth_point_projects_onto_mouth_pixels(sample_dataset):
    """Multi-view consistency: one 3D mouth point lands on mouth pixels in every open-mouth frame."""
    meta = read_transforms(sample_dataset)
    identity = make_identity(0)
    open_frames = [i for i, f in enumerate(meta.frames) if f.mouth_open > 0.5]
    assert len(open_frames) >= 3
    poses = np.stack([meta.frames[i].camera_to_world for i in open_frames])
    assert np.ptp(poses[:, :3, 3], axis=0).max() > 0.01, "head pose must vary between these frames"
    for i in open_frames:
        frame = meta.frames[i]
        u, v = _project(
            mouth_anchor(identity, frame.mouth_open), frame.camera_to_world, meta.fl_x, meta.fl_y, meta.cx, meta.cy
        )
        labels = np.array(Image.open(frame.parsing_path))
        r, c = int(v), int(u)
        patch = labels[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
        assert (patch == L.MOUTH_INTERIOR).any(), f"frame {i}: ({u:.1f}, {v:.1f}) is not on the mouth"
    # and a point far from the mouth does not
    u, v = _project(np.array([0.0, 0.5, 0.7]), meta.frames[0].camera_to_world, meta.fl_x, meta.fl_y, meta.cx, meta.cy)
    labels = np.array(Image.open(meta.frames[0].parsing_path))
    assert labels[int(v), int(u)] != L.MOUTH_INTERIOR


def test_generation_is_deterministic(sample_dataset, tmp_path):
    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample

    again = write_synthetic_sample(tmp_path, identities=1, seconds=3.0, resolution=48)[0].root
    for name in ("audio.wav", "images/00010.png", "parsing/00040.png", "background.png"):
        assert (again / name).read_bytes() == (sample_dataset / name).read_bytes(), name
    a = json.loads((again / "transforms.json").read_text())
    b = json.loads((sample_dataset / "transforms.json").read_text())
    assert a["frames"] == b["frames"]


def test_several_identities_differ(tmp_path):
    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample

    metas = write_synthetic_sample(tmp_path, identities=2, seconds=0.2, resolution=32)
    assert [m.identity for m in metas] == ["synth00", "synth01"]
    a = np.array(Image.open(metas[0].frames[0].image_path)).astype(float)
    b = np.array(Image.open(metas[1].frames[0].image_path)).astype(float)
    assert np.abs(a - b).mean() > 10


def test_audio_predicts_mouth_opening(tmp_path):
    """A linear model from log-mel to mouth opening, fit on the first half of the speech, holds on the second."""
    from aenerf_ns.audio.audio_features import compute_audio_features
    from aenerf_ns.audio.audio_io import write_wav
    from aenerf_ns.synthetic.synthetic_speech import opening_per_frame, synthesize_speech

    speech = synthesize_speech(20.0, f0=140.0, seed=3)
    write_wav(tmp_path / "speech.wav", speech.audio, speech.sample_rate)
    y = opening_per_frame(speech.opening, speech.sample_rate, 25.0, 500)
    feats = compute_audio_features(tmp_path / "speech.wav", 25.0, 500)
    x = feats[:, 6:10].mean(1)  # the 40 ms around each frame's centre
    x = np.concatenate([x, np.ones((len(x), 1))], 1)
    half = len(y) // 2
    w = np.linalg.solve(x[:half].T @ x[:half] + 1.0 * np.eye(x.shape[1]), x[:half].T @ y[:half])
    corr = np.corrcoef(x[half:] @ w, y[half:])[0, 1]
    assert corr > 0.7, corr
    # and the relation is specific: shuffled targets give nothing
    rng = np.random.default_rng(0)
    y_shuffled = rng.permutation(y[:half])
    w0 = np.linalg.solve(x[:half].T @ x[:half] + 1.0 * np.eye(x.shape[1]), x[:half].T @ y_shuffled)
    assert abs(np.corrcoef(x[half:] @ w0, y[half:])[0, 1]) < 0.4


@pytest.mark.slow
def test_main_job_runs_end_to_end_with_stage_lines_and_a_video(tmp_path):
    """README command 1 (`aenerf-sample`) at tiny size: metrics, pictures, an mp4 with sound, a quiet terminal."""
    import subprocess
    import sys

    from aenerf_ns.inference.video_io import probe_media

    out = tmp_path / "sample"
    cmd = [str(Path(sys.executable).parent / "aenerf-sample"), "--output", str(out), "--iterations", "3"]
    cmd += ["--seconds", "2", "--resolution", "32", "--eval-frames", "4", "--speech-seconds", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["num_frames"] == 4 and 5.0 < metrics["psnr"] < 60.0
    for picture in ("heldout_strip.png", "mouth_opening.png"):
        assert (out / "eval" / picture).stat().st_size > 1000
    info = probe_media(out / "talking_head.mp4")
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.num_frames == 25 and (info.width, info.height) == (32, 32)  # the clip's own size

    terminal = run.stdout + run.stderr
    stages = [line.split("]")[0] + "]" for line in terminal.splitlines() if line.startswith("[") and "/4]" in line]
    assert stages == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"], terminal[-3000:]
    assert "Warning" not in terminal, "library warnings belong in the log file"
    assert "TrainerConfig(" not in terminal, "nerfstudio's config dump is not printed"
