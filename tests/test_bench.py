"""aenerf-bench: one run through the CLI (five methods, a few steps), its reuse, and its measuring parts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCH = [str(Path(sys.executable).parent / "aenerf-bench")]
METHODS = ("nerfacto", "dnerf", "aenerf", "ssp-nerf", "aenerf-gs")
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
    evaluations = report["methods"]["aenerf"]["network_evaluations"]
    assert evaluations["measured_pixels"] == 64 * 64 and evaluations["points_per_pixel"]["warper"] <= 1.0
    assert evaluations["total_points"] > evaluations["points"]["field_aa"] > 0
    assert "Network evaluations per 512x512 frame" in stdout
    assert report["methods"]["aenerf-gs"]["network_evaluations"] is None, "splatting evaluates no networks per ray"


def test_timings_are_ratios_to_nerfacto_from_the_same_run(bench_run):
    out, _, _ = bench_run
    methods = json.loads((out / "bench.json").read_text())["methods"]
    ref = methods["nerfacto"]
    assert ref["train_time_ratio"] == pytest.approx(1.0) and ref["render_time_ratio"] == pytest.approx(1.0)
    for r in methods.values():
        expected = r["train_seconds_per_1k_steps"] / ref["train_seconds_per_1k_steps"]
        assert r["train_time_ratio"] == pytest.approx(expected)
        assert r["render_time_ratio"] == pytest.approx(r["render_seconds_per_frame"] / ref["render_seconds_per_frame"])


def test_every_method_gets_the_lip_measures(bench_run):
    """LMD for every method, peers included; 12 frames are too few for the sync measures, which say so."""
    out, _, stdout = bench_run
    for name, r in json.loads((out / "bench.json").read_text())["methods"].items():
        assert isinstance(r["lmd"], float) and r["lmd"] >= 0 and r["lmd_frames"] > 0, name
        for key in ("av_sync", "lse_c", "lse_d", "av_sync_ground_truth"):
            assert r[key].startswith("skipped: needs at least 25"), (name, key, r[key])
    assert all(column in stdout for column in ("LMD", "LSE-C", "LSE-D"))


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
    from aenerf_ns.bench.heldout import HeldoutFrames
    from aenerf_ns.bench.training import train

    settings = _settings(sample_dataset, budget_steps=2, curve_points=1)
    heldout = HeldoutFrames.read(sample_dataset, 0.5)
    for method in ROSTER:
        config = method.build(sample_dataset, True, 0.5, 64)
        trained = train(config, settings.training_run(method.name, heldout, "cpu"))
        assert trained.steps == 2 and np.isfinite(trained.curve[-1].psnr), method.name


def test_time_budget_stops_training(sample_dataset):
    from aenerf_ns.bench.bench_methods import BY_NAME
    from aenerf_ns.bench.heldout import HeldoutFrames
    from aenerf_ns.bench.training import train

    settings = _settings(sample_dataset, budget_seconds=2.0, curve_points=2)
    config = BY_NAME["ssp-nerf"].build(sample_dataset, True, 0.5, 64)
    trained = train(config, settings.training_run("ssp-nerf", HeldoutFrames.read(sample_dataset, 0.5), "cpu"))
    assert 2.0 <= trained.train_seconds < 4.0 and trained.steps > 3
    assert len(trained.curve) == 3  # start, half-way, end


def test_step_budget_curve_checkpoint_and_config_overrides(sample_dataset, tmp_path):
    """Curve points every k steps on the pipeline's own held-out split, a loadable checkpoint, and our
    methods' registered configs with overrides (an unknown field is an error)."""
    import torch

    from aenerf_ns.bench.bench_methods import our_method_config
    from aenerf_ns.bench.training import TrainingBudget, TrainingRun, train

    config = our_method_config("aenerf", sample_dataset, rays=64, model={"use_aaa": False})
    assert config.method_name == "aenerf-tiny" and config.pipeline.datamanager.train_num_rays_per_batch == 64
    assert config.pipeline.model.use_aaa is False
    budget = TrainingBudget(steps=5)
    run = TrainingRun("aenerf", budget, curve_marks=budget.every(2), curve_frames=2, checkpoint=tmp_path / "a.ckpt")
    trained = train(config, run)
    assert [p.step for p in trained.curve] == [0, 2, 4, 5] and trained.steps == 5 and trained.ms_per_step > 0
    saved = torch.load(tmp_path / "a.ckpt", map_location="cpu", weights_only=False)
    assert saved["step"] == 4 and set(saved["pipeline"]) == set(trained.pipeline.state_dict())
    assert config.optimizers["fields"]["scheduler"].max_steps == 5
    with pytest.raises(ValueError, match="has no field 'no_such_field'"):
        our_method_config("ssp-nerf", sample_dataset, sampler={"no_such_field": 1})
    with pytest.raises(ValueError, match="unknown talking-head method 'nope'; installed: aenerf, "):
        our_method_config("nope", sample_dataset)


def test_training_budget_is_steps_or_seconds():
    from aenerf_ns.bench.training import TrainingBudget

    assert TrainingBudget(steps=10).evenly(4) == (2.5, 5.0, 7.5)
    assert TrainingBudget(seconds=6.0).evenly(3) == (2.0, 4.0)
    assert TrainingBudget(steps=7).every(3) == (3, 6) and TrainingBudget(steps=7).every(0) == ()
    assert TrainingBudget(steps=4).spent(4, 0.0) and not TrainingBudget(seconds=1.0).spent(99, 0.5)
    with pytest.raises(ValueError, match="either steps or seconds"):
        TrainingBudget(steps=3, seconds=1.0)
    with pytest.raises(ValueError, match="either steps or seconds"):
        TrainingBudget()
    with pytest.raises(ValueError, match="must be positive"):
        TrainingBudget(seconds=0.0)
    with pytest.raises(ValueError, match="need a step budget"):
        TrainingBudget(seconds=3.0).every(1)


def test_peers_build_lpips_offline_without_touching_torchmetrics(sample_dataset):
    """Without AlexNet's weights on disk the peers' LPIPS is a NaN stand-in, and torchmetrics' own class stays."""
    import torchmetrics.image.lpip as lpip

    from aenerf_ns.bench.peer_methods import NaNLPIPS, peer_config
    from aenerf_ns.utils.offline_weights import alexnet_weights_path

    original = lpip.LearnedPerceptualImagePatchSimilarity
    for name in ("nerfacto", "dnerf"):
        model = peer_config(name, sample_dataset, 64, small=True).pipeline.model.setup(
            scene_box=_box(), num_train_data=4, metadata={}
        )
        if not alexnet_weights_path().is_file():
            assert isinstance(model.lpips, NaNLPIPS), name
        assert lpip.LearnedPerceptualImagePatchSimilarity is original


def test_compact_dnerf_takes_its_sizes_from_the_config(sample_dataset):
    from aenerf_ns.bench.peer_methods import peer_config
    from aenerf_ns.models.talking_head_model import TalkingHeadModelConfig

    small = peer_config("dnerf", sample_dataset, 64, small=True).pipeline.model
    full = peer_config("dnerf", sample_dataset, 64, small=False).pipeline.model
    assert small.collider_params == {
        "near_plane": TalkingHeadModelConfig().near_plane,
        "far_plane": TalkingHeadModelConfig().far_plane,
    }

    def parameters(cfg):
        model = cfg.setup(scene_box=_box(), num_train_data=4)
        return sum(p.numel() for p in model.parameters())

    assert parameters(small) < parameters(full) / 10


def test_method_bench_runs_every_part(tmp_path):
    """aenerf-method-bench end to end with a few steps per run: every part, its tables and results.json."""
    cmd = [str(Path(sys.executable).parent / "aenerf-method-bench"), "--output", str(tmp_path)]
    cmd += ["--steps", "2", "--base-steps", "2", "--finetune-steps", "2", "--eval-every", "1", "--field-steps", "2"]
    cmd += ["--ssp-steps", "1", "--eval-frames", "2", "--seconds", "2", "--resolution", "32", "--base-identities", "1"]
    cmd += ["--ablation-steps", "1", "--ablation-frames", "3", "--cross-frames", "3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert np.isfinite(results["audio"]["lower_face_error_ratio"])
    fewshot = results["fewshot"]
    assert [p[0] for p in fewshot["finetune_curve"]] == [0, 1, 2] == [p[0] for p in fewshot["scratch_curve"]]
    assert (tmp_path / "base" / "step-base.ckpt").is_file() and fewshot["base_ms_per_step"] > 0
    assert set(results["fields"]["curves"]) == {"triplane", "hashgrid", "positional"}
    assert set(results["ssp"]) == {"ssp-nerf", "ssp/uniform-rays", "ssp/no-torso-def", "aenerf"}
    ablation = results["ablation"]
    assert list(ablation) == ["full", "w/o AAA", "w/o AAFG", "w/o Warper"]
    for row in ablation.values():
        assert isinstance(row["lmd"], float) and row["lmd"] >= 0 and isinstance(row["psnr"], float)
        assert row["lse_c"].startswith("skipped: needs at least 25"), "3 frames are too few for the sync measures"
        # only synth01 is another speaker here; its speech drives each model in the cross-driven row
        (cross,) = row["cross_driven"].values()
        assert "skipped" in cross["av_sync"] and cross["lmd"].startswith("skipped: cross-driven")
    for title in ("unseen audio", "New identity", "Field options", "SSP-NeRF vs ablations", "Table 4", "Cross-driven"):
        assert title in proc.stdout
    bad = subprocess.run(cmd[:3] + ["--skip", "nope"], capture_output=True, text=True)
    assert bad.returncode != 0 and "nope" in bad.stderr


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
    from aenerf_ns.evaluation.mouth_landmarks import mouth_openings, opening_agreement
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


def test_roster_takes_in_every_installed_method(monkeypatch):
    """A talking-head method registered through the entry points is benchmarked without a row of its own."""
    from dataclasses import replace

    from aenerf_ns.bench import bench_methods
    from aenerf_ns.models.method_contract import talking_head_methods

    installed = talking_head_methods()
    assert {m.name for m in installed} <= {m.name for m in bench_methods.roster()}
    newcomer = replace(installed[0], name="newcomer", tiny="newcomer-tiny")
    monkeypatch.setattr(bench_methods, "talking_head_methods", lambda: (*installed, newcomer))
    roster = bench_methods.roster()
    assert roster[: len(bench_methods.METHODS)] == bench_methods.METHODS
    assert roster[-1].name == "newcomer" and roster[-1].role == "ours"
    assert bench_methods.bench_method("newcomer") is not None
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        bench_methods.bench_method("nope")
