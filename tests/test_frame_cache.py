"""Frames held in memory are bounded: a dataset larger than the bound holds only that many frames at a time
and draws new ones from disk as training goes on; a small dataset is cached whole."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

READ_LOG_SITE = Path(__file__).resolve().parent / "read_log"


def _manager(data, **bounds):
    from aenerf_ns.data.talking_head_datamanager import TalkingHeadDataManagerConfig
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig

    config = TalkingHeadDataManagerConfig(
        dataparser=TalkingHeadDataParserConfig(data=data), train_num_rays_per_batch=256, **bounds
    )
    return config.setup(device="cpu", test_mode="val", world_size=1, local_rank=0)


def _frames_seen(manager, steps: range) -> set[int]:
    seen: set[int] = set()
    for step in steps:
        _, batch = manager.next_train(step)
        seen |= set(torch.unique(batch["indices"][:, 0]).tolist())
    return seen


def test_a_large_dataset_holds_a_bounded_refreshed_set(sample_dataset):
    manager = _manager(sample_dataset, train_num_images_to_sample_from=6, train_num_times_to_repeat_images=3)
    total = len(manager.train_dataset)
    assert total > 12
    loader = manager.train_image_dataloader
    assert not loader.cache_all_images and loader.num_images_to_sample_from == 6
    first = _frames_seen(manager, range(3))
    assert len(first) <= 6, "one set of held frames serves the steps until the next draw"
    later = _frames_seen(manager, range(3, 30))
    assert len(first | later) > 6, "new frames are read as training goes on"


def test_a_small_dataset_is_cached_whole(sample_dataset):
    manager = _manager(sample_dataset)  # the defaults hold up to 250 frames
    loader = manager.train_image_dataloader
    assert loader.cache_all_images and len(loader.cached_collated_batch["image"]) == len(manager.train_dataset)


def _image_manager(data, **bounds):
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
    from aenerf_ns.data.talking_head_image_datamanager import TalkingHeadImageDataManagerConfig

    config = TalkingHeadImageDataManagerConfig(dataparser=TalkingHeadDataParserConfig(data=data), **bounds)
    return config.setup(device="cpu", test_mode="val", world_size=1, local_rank=0)


def test_whole_frame_training_holds_a_bounded_refreshed_set(sample_dataset):
    """aenerf-gs's manager: one whole held frame per step, at most the bound held, new frames after each draw."""
    manager = _image_manager(sample_dataset, train_num_images_to_sample_from=6, train_num_times_to_repeat_images=3)
    total = len(manager.train_dataset)
    assert total > 12
    sets, frames = [], []
    for step in range(30):
        camera, batch = manager.next_train(step)
        held = manager.held_frames
        assert len(held) <= 6 and len(manager.train_image_dataloader.cached_collated_batch["image"]) <= 6
        assert batch["image_idx"] in held and camera.metadata["cam_idx"] == batch["image_idx"]
        assert batch["image"].shape == (48, 48, 3) and batch["parsing"].shape == (48, 48, 1)
        expected = manager.train_dataset.get_data(batch["image_idx"], image_type="float32")["image"]
        assert torch.equal(batch["image"], expected), "the step's frame is the one its camera shows"
        if not sets or sets[-1] != held:
            sets.append(held)
        frames.append(batch["image_idx"])
    assert len(sets) > 1 and set(frames) - set(sets[0]), "frames outside the first set are trained on after a draw"
    assert len(set(frames)) > 6


def test_whole_frame_training_on_a_small_dataset_holds_it_whole_and_shows_every_frame(sample_dataset):
    manager = _image_manager(sample_dataset)  # the defaults hold up to 250 frames
    total = len(manager.train_dataset)
    frames = [manager.next_train(step)[1]["image_idx"] for step in range(total)]
    assert sorted(manager.held_frames) == list(range(total))
    assert sorted(frames) == list(range(total)), "each frame once per pass, as nerfstudio's full-image manager does"


@pytest.mark.slow
def test_ns_train_aenerf_gs_reads_frames_in_bounded_sets(sample_dataset, ns_train, tmp_path):
    """A tiny `ns-train aenerf-gs-tiny` run holding 6 frames, drawn anew every 3 steps: it reads (logged by
    tests/read_log) at most 6 frames per draw, never the whole split at once, and more than 6 frames in all. Its audio
    table is stored in float16 (the many-identity setting), which trains like float32."""
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
    from aenerf_ns.engine.opening_calibration import CALIBRATION_FRAMES

    train = TalkingHeadDataParserConfig(data=sample_dataset).setup().get_dataparser_outputs("train").image_filenames
    cmd = ns_train(sample_dataset, tmp_path / "runs", iterations=8, method="aenerf-gs-tiny")
    cmd += ["--pipeline.model.num-gaussians", "800", "--pipeline.model.audio-table-dtype", "float16"]
    cmd += ["--pipeline.datamanager.train-num-images-to-sample-from", "6"]
    cmd += ["--pipeline.datamanager.train-num-times-to-repeat-images", "2"]
    (tmp_path / "reads").mkdir()
    env = dict(os.environ, AENERF_READ_LOG=str(tmp_path / "reads"))
    env["PYTHONPATH"] = os.pathsep.join([str(READ_LOG_SITE), str(Path(__file__).resolve().parent.parent)])
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    reads = [Path(line) for line in (tmp_path / "reads" / "rank-.txt").read_text().split()]
    frames = [path for path in reads if path.parent.name == "images"]
    assert set(frames) <= {Path(p) for p in train}, "training reads training frames only"
    # 8 steps with a draw every 3 steps (the first set serves 3): draws at steps 0, 3 and 6, 6 frames each; then the
    # mouth-opening gain is measured on up to CALIBRATION_FRAMES training frames (engine.opening_calibration)
    measured = min(CALIBRATION_FRAMES, len(train))
    assert len(frames) == 18 + measured and 18 < len(train), "frames are read 6 at a time, not the whole split up front"
    assert len(set(frames[:18])) > 6, "later draws read frames outside the first set"


def test_whole_frame_evaluation_reads_each_frame_when_it_is_evaluated(sample_dataset):
    manager = _image_manager(sample_dataset)
    dataset = manager.eval_dataset
    reads = []
    read = dataset.get_data
    dataset.get_data = lambda idx, **kw: reads.append(idx) or read(idx, **kw)
    shown = []
    for step in range(3):
        camera, batch = manager.next_eval_image(step)
        assert torch.equal(batch["image"], read(batch["image_idx"])["image"])
        assert camera.metadata["audio_index"].shape == (1, 1)
        shown.append(batch["image_idx"])
    assert reads == shown and len(set(shown)) == 3, "one frame read per evaluation, none repeated in a pass"

    reads.clear()
    frames = manager.fixed_indices_eval_dataloader
    assert len(frames) == len(dataset) > 3
    walk = iter(frames)
    camera, batch = next(walk)
    assert reads == [0] and batch["image_idx"] == 0 and camera.shape == (1,)
    assert [batch["image_idx"] for _, batch in walk] == list(range(1, len(dataset)))
