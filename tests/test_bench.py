"""aenerf-bench: one run through the CLI (three methods, a few steps), its reuse, and its measuring parts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCH = [str(Path(sys.executable).parent / "aenerf-bench")]
METHODS = ("nerfacto", "dnerf", "ssp-nerf")
STEPS = 5


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cmd = BENCH + ["--output", str(out), "--methods", *METHODS, "--budget-steps", str(STEPS)]
    cmd += ["--eval-frames", "12", "--scaling", "32", "64"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, cmd, proc.stdout


def test_every_method_is_trained_and_scored(bench_run):
    out, _, stdout = bench_run
    report = json.loads((out / "bench.json").read_text())
    assert list(report["methods"]) == list(METHODS)
    for name, r in report["methods"].items():
        assert r["steps"] == STEPS, name
        assert 5.0 < r["psnr"] < 60.0 and 0.0 < r["ssim"] <= 1.0 and 5.0 < r["lower_face_psnr"] < 60.0, name
        assert r["eval_frames"] == 12 and r["render_seconds_per_frame"] > 0 and r["train_seconds"] > 0, name
        assert r["train_peak_mb"] > 100, name  # a torch process holds at least this much
        seconds = [p["seconds"] for p in r["curve"]]
        assert seconds == sorted(seconds) and r["curve"][0]["step"] == 0 and r["curve"][-1]["step"] == STEPS
        assert [row["height"] for row in r["scaling"]] == [32, 64], name
        assert all(row["seconds"] > 0 for row in r["scaling"]), name
        assert name in stdout
    assert "Render cost of one frame against image size" in stdout


def test_timings_are_ratios_to_nerfacto_from_the_same_run(bench_run):
    out, _, _ = bench_run
    methods = json.loads((out / "bench.json").read_text())["methods"]
    ref = methods["nerfacto"]
    assert ref["train_time_ratio"] == pytest.approx(1.0) and ref["render_time_ratio"] == pytest.approx(1.0)
    for r in methods.values():
        expected = r["train_seconds_per_1k_steps"] / ref["train_seconds_per_1k_steps"]
        assert r["train_time_ratio"] == pytest.approx(expected)
        assert r["render_time_ratio"] == pytest.approx(r["render_seconds_per_frame"] / ref["render_seconds_per_frame"])


def test_ground_truth_mouth_follows_the_speech(bench_run):
    """The picture-based mouth measure, on the ground truth itself, must find the speech in sync."""
    out, _, _ = bench_run
    truth = json.loads((out / "bench.json").read_text())["methods"]["ssp-nerf"]["av_sync_ground_truth"]
    assert truth["best_offset_frames"] == 0 and truth["best_correlation"] > 0.6


def test_pictures_are_written(bench_run):
    out, _, _ = bench_run
    curve = np.array(Image.open(out / "psnr_curve.png").convert("L"))
    assert curve.shape[0] > 200 and curve.std() > 10
    grid = np.array(Image.open(out / "heldout_grid.png").convert("RGB"))
    assert grid.shape[0] >= 128 * (len(METHODS) + 1)  # ground truth + one row per method, enlarged to 128 px
    assert grid[:, 150:].std() > 10


def test_rerun_reuses_finished_methods(bench_run):
    out, cmd, _ = bench_run
    before = json.loads((out / "bench.json").read_text())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("reusing the finished result") == len(METHODS)
    after = json.loads((out / "bench.json").read_text())
    assert after["methods"]["nerfacto"]["psnr"] == before["methods"]["nerfacto"]["psnr"]


def test_bad_arguments_get_clear_errors(tmp_path):
    proc = subprocess.run(BENCH + ["--output", str(tmp_path), "--methods", "nerfacto", "nope"], capture_output=True)
    assert proc.returncode != 0 and b"unknown method(s) ['nope']" in proc.stderr
    proc = subprocess.run(BENCH + ["--output", str(tmp_path), "--data", str(tmp_path / "missing")], capture_output=True)
    assert proc.returncode != 0 and b"holds no transforms.json" in proc.stderr


def _settings(data: Path, budget_steps: int | None = None, budget_seconds: float | None = None, curve_points=1):
    """Benchmark settings for in-process training on the small sample: 64 rays, one-frame curve points."""
    from aenerf_ns.bench.bench_run import RunSettings

    return RunSettings(
        data=str(data),
        small=True,
        train_fraction=0.5,
        rays=64,
        budget_steps=budget_steps,
        budget_seconds=budget_seconds,
        curve_points=curve_points,
        curve_frames=1,
        eval_frames=1,
        max_offset=1,
        scaling=(),
    )


def test_every_method_in_the_roster_trains(sample_dataset):
    """Each configuration (peers, both fields, the ablations, SSP-NeRF) builds and takes training steps."""
    from aenerf_ns.bench.bench_methods import METHODS as ROSTER
    from aenerf_ns.bench.bench_run import HeldoutFrames, train_with_budget

    settings = _settings(sample_dataset, budget_steps=2, curve_points=1)
    heldout = HeldoutFrames(sample_dataset, 0.5)
    for method in ROSTER:
        config = method.build(sample_dataset, True, 0.5, 64)
        trained = train_with_budget(config, settings, method.name, heldout, "cpu")
        assert trained["steps"] == 2 and np.isfinite(trained["curve"][-1][2]), method.name


def test_time_budget_stops_training(sample_dataset):
    from aenerf_ns.bench.bench_methods import BY_NAME
    from aenerf_ns.bench.bench_run import HeldoutFrames, train_with_budget

    settings = _settings(sample_dataset, budget_seconds=2.0, curve_points=2)
    config = BY_NAME["ssp-nerf"].build(sample_dataset, True, 0.5, 64)
    trained = train_with_budget(config, settings, "ssp-nerf", HeldoutFrames(sample_dataset, 0.5), "cpu")
    assert 2.0 <= trained["train_seconds"] < 4.0 and trained["steps"] > 3
    assert len(trained["curve"]) == 3  # start, half-way, end


def test_compact_dnerf_takes_its_sizes_from_the_config(sample_dataset):
    from aenerf_ns.bench.peer_methods import offline_lpips, peer_config
    from aenerf_ns.models.talking_head_model import TalkingHeadModelConfig

    small = peer_config("dnerf", sample_dataset, 64, small=True).pipeline.model
    full = peer_config("dnerf", sample_dataset, 64, small=False).pipeline.model
    assert small.collider_params == {
        "near_plane": TalkingHeadModelConfig().near_plane,
        "far_plane": TalkingHeadModelConfig().far_plane,
    }

    def parameters(cfg):
        with offline_lpips():  # nerfstudio's NeRF builds LPIPS, which would download AlexNet weights
            model = cfg.setup(scene_box=_box(), num_train_data=4)
        return sum(p.numel() for p in model.parameters())

    assert parameters(small) < parameters(full) / 10


def _box():
    import torch
    from nerfstudio.data.scene_box import SceneBox

    return SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))


def test_peak_memory_sees_an_allocation_inside_the_block():
    from aenerf_ns.bench.resource_meter import PeakMemory

    with PeakMemory("cpu") as meter:
        block = np.ones(300 * 2**20 // 8)  # 300 MB, touched
        del block
    assert meter.added_mb > 200
    with PeakMemory("cpu") as quiet:
        sum(range(1000))
    assert quiet.added_mb < 50


def test_mouth_opening_from_pictures():
    """On rendered synthetic frames the measure follows the true mouth; a closed-mouth render of the same
    poses barely moves (the ground truth's jaw does not leak in through the face region)."""
    from aenerf_ns.evaluation.mouth_opening import mouth_openings, opening_agreement
    from aenerf_ns.synthetic.synthetic_dataset import opening_per_frame
    from aenerf_ns.synthetic.synthetic_head import (
        StaticCamera,
        head_pose_track,
        make_identity,
        render_background,
        render_frame,
    )
    from aenerf_ns.synthetic.synthetic_speech import synthesize_speech

    person, camera, n = make_identity(0), StaticCamera.square(64), 60
    speech = synthesize_speech(n / 25, f0=person.f0, seed=person.seed)
    opening = opening_per_frame(speech.opening, speech.sample_rate, 25, n)
    poses, plate = head_pose_track(n, 25, person.seed), render_background(person, 64, 64)
    truth = [render_frame(person, camera, poses[i], float(opening[i]), plate)[0] for i in range(n)]
    closed = [render_frame(person, camera, poses[i], float(opening.min()), plate)[0] for i in range(n)]

    rendered, reference = mouth_openings(truth, truth)
    np.testing.assert_allclose(rendered, reference, atol=1e-6)
    assert np.corrcoef(reference, opening)[0, 1] > 0.8
    rendered, reference = mouth_openings(closed, truth)
    assert opening_agreement(rendered, reference)["motion_ratio"] < 0.4
    blank = [np.full_like(t, 128) for t in truth]
    rendered, reference = mouth_openings(truth, blank)  # no face in the reference: nothing to compare
    assert np.isnan(reference).all() and opening_agreement(rendered, reference)["frames"] == 0
    with pytest.raises(ValueError, match="renders but"):
        mouth_openings(truth[:3], truth)
