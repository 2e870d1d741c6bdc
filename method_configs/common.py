"""Trainer presets shared by the talking-head methods (`aenerf`, `ssp-nerf` and their CPU presets).

Imported from nerfstudio's method discovery like the method modules themselves: only nerfstudio's config,
engine and pipeline-config modules are used here, never its scripts (that would close an import cycle).
"""

from __future__ import annotations

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig

from aenerf_ns.engine.checkpointing_trainer import CheckpointingTrainerConfig
from aenerf_ns.engine.talking_head_pipeline import TalkingHeadPipelineConfig
from aenerf_ns.utils.safe_checkpoint import allow_numpy_scalars

# nerfstudio imports this module (method discovery) before its tools load a checkpoint: runs saved before our trainer
# wrote plain numbers hold numpy scalars, which `ns-render`, `ns-eval`, `ns-viewer` and `ns-export` then read.
allow_numpy_scalars()

DEVICE_TYPE = "cuda" if torch.cuda.is_available() else "cpu"
"""Where training runs by default: the GPU when there is one."""
VIEWER_HOST = "127.0.0.1"
"""The viewer serves this machine only; `--viewer.websocket-host 0.0.0.0` opts in to all interfaces."""

MOUTH_SUPERVISION = dict(opening_condition=True, mouth_target_loss_mult=0.0)
"""The aenerf and aenerf-gs presets tell their fields each frame's mouth opening (the truth in training, the one
predicted from the audio when rendering), and leave the audio code free of the opening target, which made it a
second, shrunken opening signal (docs/aenerf.md and docs/gaussians.md, *The mouth*)."""


TINY_LEARNING_RATE = 3e-3
"""The CPU presets' Adam learning rate, decaying to a tenth over their 1500 steps (the full-size presets keep the
paper's 5e-4). At 1e-3 the mouth was still being fitted when the budget ran out: a run scored on its own training
frames was hardly sharper there than on held-out ones (docs/aenerf.md, *The learning rate*)."""


def optimizers(max_steps: int, lr: float = 5e-4) -> dict:
    """Adam at 5e-4 with exponential decay to a tenth, as in the paper."""
    return {
        "fields": {
            "optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=lr / 10, max_steps=max_steps, ramp="linear"),
        }
    }


def talking_head_trainer(method_name: str, datamanager, model) -> TrainerConfig:
    """The full-size (GPU) training settings shared by the talking-head methods; checkpoints are written
    atomically, so a killed run resumes with `--load-dir`."""
    max_steps = 40000
    return CheckpointingTrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=500,
        steps_per_eval_image=1000,
        steps_per_save=2000,
        max_num_iterations=max_steps,
        mixed_precision=False,
        machine=MachineConfig(device_type=DEVICE_TYPE),
        pipeline=TalkingHeadPipelineConfig(datamanager=datamanager, model=model),
        optimizers=optimizers(max_steps),
        viewer=ViewerConfig(num_rays_per_chunk=4096, websocket_host=VIEWER_HOST),
        vis="viewer",
    )


def tiny_trainer(config: TrainerConfig, method_name: str, model) -> TrainerConfig:
    """`config` shrunk to a CPU preset: 1500 steps, 512 rays, frequent evaluation, tensorboard, `model`, Adam at
    `TINY_LEARNING_RATE` decaying to a tenth."""
    max_steps = 1500
    config.method_name = method_name
    config.max_num_iterations = max_steps
    config.steps_per_eval_batch = 100
    config.steps_per_eval_image = 500
    config.steps_per_eval_all_images = 100000
    config.steps_per_save = 500
    config.vis = "tensorboard"
    config.pipeline.datamanager.train_num_rays_per_batch = 512
    config.pipeline.datamanager.eval_num_rays_per_batch = 512
    config.pipeline.model = model
    config.optimizers = optimizers(max_steps, lr=TINY_LEARNING_RATE)
    return config


TINY_FIELDS = dict(
    num_coarse_samples=16,
    num_importance_samples=16,
    hidden_dim=64,
    num_layers=3,
    num_frequencies=6,
    hash_levels=8,
    hash_log2_size=14,
    hash_max_resolution=256,
    audio_code_dim=16,
    audio_smoothing_radius=2,
    eval_num_rays_per_chunk=2048,
)
"""Field, sampling and audio sizes of the CPU presets."""
