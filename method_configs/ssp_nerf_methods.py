"""`ns-train ssp-nerf` and its CPU preset `ns-train ssp-nerf-tiny`.

Like aenerf_methods, this imports only model and datamanager modules (no nerfstudio scripts), so
nerfstudio's method discovery cannot close an import cycle through it.
"""

from __future__ import annotations

from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from aenerf_ns.data.talking_head_datamanager import TalkingHeadDataManagerConfig
from aenerf_ns.method_configs.common import TINY_FIELDS, talking_head_trainer, tiny_trainer
from aenerf_ns.ssp_nerf.semantic_sampler import SemanticPixelSamplerConfig
from aenerf_ns.ssp_nerf.ssp_nerf_model import SSPNeRFModelConfig


def ssp_nerf_config() -> TrainerConfig:
    """Full-size SSP-NeRF (GPU)."""
    datamanager = TalkingHeadDataManagerConfig(
        train_num_rays_per_batch=2048, eval_num_rays_per_batch=2048, pixel_sampler=SemanticPixelSamplerConfig()
    )
    return talking_head_trainer("ssp-nerf", datamanager, SSPNeRFModelConfig(eval_num_rays_per_chunk=4096))


def ssp_nerf_tiny_config() -> TrainerConfig:
    """A small field, few samples and rays: trains on a CPU in minutes on the synthetic sample."""
    model = SSPNeRFModelConfig(**TINY_FIELDS, torso_latent_dim=4, torso_hidden_dim=32)
    return tiny_trainer(ssp_nerf_config(), "ssp-nerf-tiny", model)


ssp_nerf_method = MethodSpecification(
    config=ssp_nerf_config(),
    description="SSP-NeRF: one audio-driven field for head and torso (parsing branch, semantic ray sampling, "
    "torso deformation)",
)
ssp_nerf_tiny_method = MethodSpecification(
    config=ssp_nerf_tiny_config(),
    description="SSP-NeRF CPU preset: a tiny field and few rays for quick runs on the synthetic sample",
)
