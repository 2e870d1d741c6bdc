"""nerfstudio's own methods as audio-blind peers, trained on talking-head datasets.

`nerfacto` (static) and `dnerf` (time-conditioned NeRF) read the same frames through the talking-head
dataparser, so they train and are scored on exactly the frames our methods see. They know nothing of the
audio; they set the floor an audio-driven method must beat on the lower face. dnerf gets each frame's
time in its clip (`frame_times`); held-out frames lie after the training part, so it extrapolates in
time, which is the honest comparison for new speech.

Both build LPIPS when their model is created, which downloads AlexNet weights; `offline_lpips` replaces
it with a stand-in that reports NaN unless the weights are already on disk, so nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import torch

PEERS = ("nerfacto", "dnerf")
"""Peer method names."""


def _lpips_weights_present() -> bool:
    from aenerf_ns.evaluation import ALEXNET_WEIGHTS

    return (Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS).is_file()


class _NoLPIPS(torch.nn.Module):
    """Stands in for torchmetrics' LPIPS when its weights are not on disk: returns NaN."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return torch.tensor(float("nan"))


@contextlib.contextmanager
def offline_lpips():
    """Within the block, models that build LPIPS get a NaN stand-in unless AlexNet's weights are on disk."""
    import torchmetrics.image.lpip as lpip

    if _lpips_weights_present():
        yield
        return
    original = lpip.LearnedPerceptualImagePatchSimilarity
    lpip.LearnedPerceptualImagePatchSimilarity = _NoLPIPS
    try:
        yield
    finally:
        lpip.LearnedPerceptualImagePatchSimilarity = original


def peer_config(name: str, data: Path, rays: int, small: bool):
    """A TrainerConfig for peer `name` on a talking-head dataset.

    `small` shrinks the networks for CPU runs (nerfacto: torch hash grid with 8 levels of 2^15 entries and
    16+32 proposal/field samples; dnerf: 32+32 samples). Camera pose optimisation is off, like for ours.
    """
    from nerfstudio.configs.method_configs import method_configs
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig

    from aenerf_ns.dataparsers.talking_head_dataparser import TalkingHeadDataParserConfig

    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose from {PEERS}")
    config = copy.deepcopy(method_configs[name])
    parser = TalkingHeadDataParserConfig(data=Path(data), frame_times=(name == "dnerf"))
    config.pipeline.datamanager = VanillaDataManagerConfig(
        dataparser=parser, train_num_rays_per_batch=rays, eval_num_rays_per_batch=rays
    )
    model = config.pipeline.model
    if name == "nerfacto":
        model.camera_optimizer.mode = "off"
        model.implementation = "torch" if small or not torch.cuda.is_available() else "tcnn"
        if small:
            model.num_levels, model.log2_hashmap_size, model.max_res = 8, 15, 256
            model.num_proposal_samples_per_ray = (32, 16)
            model.num_nerf_samples_per_ray = 16
            model.hidden_dim = 32
    else:
        model.num_coarse_samples = 32 if small else 64
        model.num_importance_samples = 32 if small else 128
    model.eval_num_rays_per_chunk = 2048
    return config
