"""`ns-train ssp-nerf` and its CPU preset `ns-train ssp-nerf-tiny`.

Like aenerf_methods, this imports only model and datamanager modules (no nerfstudio scripts), so
nerfstudio's method discovery cannot close an import cycle through it.
"""

from __future__ import annotations

from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from aenerf_ns.method_configs.aenerf_methods import DEVICE_TYPE, VIEWER_HOST, _optimizers
from aenerf_ns.ssp_nerf_model import SSPNeRFModelConfig
from aenerf_ns.talking_head_datamanager import SemanticDataManagerConfig


def ssp_nerf_config() -> TrainerConfig:
    """Full-size SSP-NeRF (GPU)."""
    max_steps = 40000
    return TrainerConfig(
        method_name="ssp-nerf",
        steps_per_eval_batch=500,
        steps_per_eval_image=1000,
        steps_per_save=2000,
        max_num_iterations=max_steps,
        mixed_precision=False,
        machine=MachineConfig(device_type=DEVICE_TYPE),
        pipeline=VanillaPipelineConfig(
            datamanager=SemanticDataManagerConfig(train_num_rays_per_batch=2048, eval_num_rays_per_batch=2048),
            model=SSPNeRFModelConfig(eval_num_rays_per_chunk=4096),
        ),
        optimizers=_optimizers(max_steps),
        viewer=ViewerConfig(num_rays_per_chunk=4096, websocket_host=VIEWER_HOST),
        vis="viewer",
    )


def ssp_nerf_tiny_config() -> TrainerConfig:
    """Small field, few samples and rays: trains on a CPU in minutes on the synthetic sample."""
    max_steps = 1500
    config = ssp_nerf_config()
    config.method_name = "ssp-nerf-tiny"
    config.max_num_iterations = max_steps
    config.steps_per_eval_batch = 100
    config.steps_per_eval_image = 500
    config.steps_per_eval_all_images = 100000
    config.steps_per_save = 500
    config.vis = "tensorboard"
    config.pipeline.datamanager.train_num_rays_per_batch = 512
    config.pipeline.datamanager.eval_num_rays_per_batch = 512
    config.pipeline.model = SSPNeRFModelConfig(
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
        torso_latent_dim=4,
        torso_hidden_dim=32,
        eval_num_rays_per_chunk=2048,
    )
    config.optimizers = _optimizers(max_steps, lr=1e-3)
    return config


ssp_nerf_method = MethodSpecification(
    config=ssp_nerf_config(),
    description="SSP-NeRF: one audio-driven field for head and torso (parsing branch, semantic ray sampling, "
    "torso deformation)",
)
ssp_nerf_tiny_method = MethodSpecification(
    config=ssp_nerf_tiny_config(),
    description="SSP-NeRF CPU preset: a tiny field and few rays for quick runs on the synthetic sample",
)
