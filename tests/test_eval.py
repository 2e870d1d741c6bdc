"""`aenerf-eval` and the weight-free lip-sync measures behind it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

VENV_BIN = Path(sys.executable).parent

EVERY_METRIC = (
    "psnr",
    "ssim",
    "lower_face_psnr",
    "lpips",
    "lmd",
    "lse_c",
    "lse_d",
    "mouth_iou",
    "mouth_height_error_px",
    "av_sync",
)


def _number_or_skipped(value) -> bool:
    if isinstance(value, str):
        return value.startswith("skipped: ")
    if isinstance(value, dict):
        return all(v is None or isinstance(v, (int, float)) for v in value.values())
    return isinstance(value, (int, float)) and np.isfinite(value)


def _image(path: Path) -> np.ndarray:
    image = np.array(Image.open(path))
    assert image.ndim == 3 and image.std() > 0, f"{path} is blank"
    return image


@pytest.mark.slow
def test_eval_self_driven_and_cross_driven(tiny_run, sample_dataset, speech_wav, tmp_path):
    run = subprocess.run(
        [str(VENV_BIN / "aenerf-eval"), "--load-config", str(tiny_run), "--output-dir", str(tmp_path / "self")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "self" / "metrics.json").read_text())
    for key in EVERY_METRIC:
        assert _number_or_skipped(report[key]), (key, report[key])
    for key in ("psnr", "ssim", "lower_face_psnr", "mouth_height_error_px"):
        assert isinstance(report[key], float), key
    assert report["lpips"].startswith("skipped: LPIPS needs AlexNet weights")
    assert isinstance(report["lmd"], float) and report["lmd"] >= 0
    assert report["lse_c"].startswith("skipped: LSE-C/LSE-D need") and "syncnet_v2.model" in report["lse_c"]
    assert {"correlation", "best_offset_frames", "best_correlation"} <= set(report["av_sync"])
    assert -5 <= report["av_sync"]["best_offset_frames"] <= 5
    # the sample's own ground truth moves its mouth with the sound, with no delay
    assert report["av_sync_ground_truth"]["best_offset_frames"] == 0
    assert report["av_sync_ground_truth"]["correlation"] > 0.3
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig

    held_out = TalkingHeadDataParserConfig(data=sample_dataset).setup().get_dataparser_outputs("test")
    assert report["num_frames"] == len(held_out.image_filenames)
    strip = _image(tmp_path / "self" / "heldout_strip.png")
    assert strip.shape == (4 * 48, 3 * 48, 3)
    _image(tmp_path / "self" / "mouth_opening.png")
    closeups = _image(tmp_path / "self" / "mouth_closeup.png")  # truth row above render row, 128 px tiles
    assert closeups.shape[0] == 2 * 128 + 4 and closeups.shape[1] % (128 + 4) == 128
    gaps = report["mouth_opening"]
    assert gaps["truth_gap_p90_px"] > 0 and gaps["rendered_gap_p90_px"] >= 0

    run = subprocess.run(
        [
            str(VENV_BIN / "aenerf-eval"),
            "--load-config",
            str(tiny_run),
            "--audio",
            str(speech_wav),
            "--max-frames",
            "40",
            "--output-dir",
            str(tmp_path / "cross"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "cross" / "metrics.json").read_text())
    assert report["mode"] == "cross-driven" and report["num_frames"] == 40
    for key in EVERY_METRIC:
        assert _number_or_skipped(report[key]), (key, report[key])
    assert report["psnr"].startswith("skipped: cross-driven") and report["lmd"].startswith("skipped: cross-driven")
    assert isinstance(report["av_sync"]["best_offset_frames"], int)
    _image(tmp_path / "cross" / "mouth_opening.png")
    _image(tmp_path / "cross" / "render_strip.png")


def test_lpips_is_computed_when_alexnet_weights_are_on_disk(tiny_run, tmp_path, monkeypatch):
    """Random AlexNet weights stand in for the real ones: the metric path runs and gives a number."""
    import torch
    import torchvision

    from aenerf_ns.evaluation.evaluate import evaluate_heldout
    from aenerf_ns.inference.checkpoints import load_trained_pipeline
    from aenerf_ns.utils.offline_weights import ALEXNET_WEIGHTS

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS
    weights.parent.mkdir(parents=True)
    torch.save(torchvision.models.alexnet().state_dict(), weights)
    _, pipeline, _, _ = load_trained_pipeline(tiny_run)
    report = evaluate_heldout(pipeline, tmp_path / "eval", max_frames=3, strip_frames=1)
    assert isinstance(report["lpips"], float) and report["lpips"] >= 0
    assert report["av_sync"].startswith("skipped: needs consecutive frames")


def test_eval_refuses_other_methods_and_bad_audio(tiny_run, tmp_path):
    bad = tmp_path / "bad.m4a"
    bad.write_bytes(b"not an m4a" * 50)
    run = subprocess.run(
        [str(VENV_BIN / "aenerf-eval"), "--load-config", str(tiny_run), "--audio", str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0 and "aenerf-eval: error: could not decode audio file" in run.stderr


class TestSyncMeasures:
    def test_best_offset_recovers_a_known_delay(self):
        from aenerf_ns.evaluation.sync_metrics import sync_report

        rng = np.random.default_rng(0)
        envelope = np.convolve(rng.normal(size=200), np.ones(3) / 3, mode="same")
        mouth = np.roll(envelope, 2) + 0.05 * rng.normal(size=200)  # mouth moves 2 frames after the sound
        report = sync_report(mouth, envelope, max_offset=5)
        assert report["best_offset_frames"] == 2
        assert report["best_correlation"] > 0.9 > report["correlation"]
        shuffled = sync_report(rng.permutation(mouth), envelope, max_offset=5)
        assert abs(shuffled["best_correlation"]) < 0.3

    def test_envelope_peaks_at_a_click(self):
        from aenerf_ns.audio.audio_io import LoadedAudio
        from aenerf_ns.evaluation.sync_metrics import speech_envelope

        rate, fps = 16000, 25.0
        samples = np.zeros(rate * 4, np.float32)
        click = int((50 + 0.5) / fps * rate)
        samples[click : click + 80] = np.sin(np.arange(80) * 2 * np.pi * 1000 / rate)
        audio = LoadedAudio(samples, rate, rate, 1, Path("click.wav"))
        envelope = speech_envelope(audio, (np.arange(100) + 0.5) / fps, fps)
        assert int(np.argmax(envelope)) == 50
        assert envelope.min() == pytest.approx(envelope.max() - 40.0)

    def test_mouth_masks(self):
        from aenerf_ns.evaluation.sync_metrics import mask_iou, mouth_extent

        a = np.zeros((10, 10), bool)
        a[3:6, 2:5] = True
        b = np.zeros((10, 10), bool)
        b[4:8, 2:5] = True
        assert mouth_extent(a) == 3 and mouth_extent(b) == 4 and mouth_extent(np.zeros((4, 4), bool)) == 0
        assert mask_iou(a, b) == pytest.approx(6 / 15)
        assert mask_iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) is None
