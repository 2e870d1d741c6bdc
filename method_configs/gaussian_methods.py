"""`ns-train aenerf-gs` and its CPU preset `ns-train aenerf-gs-tiny`: the Gaussian-splatting talking head.

Like the other method modules, this imports only config, model and data modules (never nerfstudio's scripts), so
nerfstudio's method discovery cannot close an import cycle through it.
"""

from __future__ import annotations

from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from aenerf_ns.data.talking_head_image_datamanager import TalkingHeadImageDataManagerConfig
from aenerf_ns.gaussians.densification import DensificationConfig
from aenerf_ns.gaussians.gaussian_model import GaussianTalkingHeadModelConfig
from aenerf_ns.method_configs.common import MOUTH_SUPERVISION, talking_head_trainer

LEARNING_RATES = {
    "means": (1.6e-4, 1.6e-6),
    "scales": (5e-3, 5e-3),
    "quats": (1e-3, 1e-3),
    "opacities": (5e-2, 5e-2),
    "colors": (5e-3, 5e-3),
    "semantics": (5e-3, 5e-3),
    "fields": (1e-3, 1e-4),
}
"""(start, end) learning rate of each parameter group: 3DGS's for the Gaussians (centres decay a hundredfold), the
NeRF presets' for the networks."""


def gaussian_optimizers(max_steps: int, scale: float = 1.0) -> dict:
    """Adam for every parameter group, `scale` times `LEARNING_RATES`, decaying exponentially over `max_steps`."""
    groups = {}
    for name, (start, end) in LEARNING_RATES.items():
        scheduler = None
        if end != start:
            scheduler = ExponentialDecaySchedulerConfig(lr_final=scale * end, max_steps=max_steps)
        groups[name] = {"optimizer": AdamOptimizerConfig(lr=scale * start, eps=1e-15), "scheduler": scheduler}
    return groups


def aenerf_gs_config() -> TrainerConfig:
    """Full size (GPU): 30k steps on whole frames, gsplat's CUDA rasterizer."""
    max_steps = 30000
    datamanager = TalkingHeadImageDataManagerConfig()
    config = talking_head_trainer("aenerf-gs", datamanager, GaussianTalkingHeadModelConfig(**MOUTH_SUPERVISION))
    config.max_num_iterations = max_steps
    config.optimizers = gaussian_optimizers(max_steps)
    config.viewer.num_rays_per_chunk = 1 << 15
    return config


def aenerf_gs_tiny_config() -> TrainerConfig:
    """CPU preset: fewer Gaussians and steps, faster learning rates, no opacity resets; minutes on 2 cores."""
    max_steps = 1500
    config = aenerf_gs_config()
    config.method_name = "aenerf-gs-tiny"
    config.max_num_iterations = max_steps
    config.steps_per_eval_batch = 100
    config.steps_per_eval_image = 500
    config.steps_per_eval_all_images = 100000
    config.steps_per_save = 500
    config.vis = "tensorboard"
    config.pipeline.model = GaussianTalkingHeadModelConfig(
        num_gaussians=5000,
        audio_code_dim=16,
        audio_smoothing_radius=2,
        audio_hidden_dim=64,
        torso_latent_dim=4,
        torso_hidden_dim=32,
        densification=DensificationConfig(
            refine_start=200, refine_every=100, refine_stop=1000, grow_grad2d=0.0004, reset_every=10**6
        ),
        **MOUTH_SUPERVISION,
    )
    config.optimizers = gaussian_optimizers(max_steps, scale=2.0)
    return config


aenerf_gs_method = MethodSpecification(
    config=aenerf_gs_config(),
    description="aenerf-gs: Gaussian-splatting talking head with audio-driven and audio-free Gaussians (gsplat)",
)
aenerf_gs_tiny_method = MethodSpecification(
    config=aenerf_gs_tiny_config(),
    description="aenerf-gs CPU preset: few Gaussians, pure-torch rasterizer, minutes on the synthetic sample",
)
