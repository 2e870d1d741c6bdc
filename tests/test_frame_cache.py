"""Frames held in memory are bounded: a dataset larger than the bound holds only that many frames at a time
and draws new ones from disk as training goes on; a small dataset is cached whole."""

from __future__ import annotations

import torch


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
