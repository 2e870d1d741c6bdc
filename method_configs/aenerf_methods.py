"""`ns-train aenerf` and its CPU preset `ns-train aenerf-tiny`.

nerfstudio imports this module from its method-config discovery, after its own datamanager and pipeline
modules are loaded; only model/dataparser modules of this package are imported here, none of which import
nerfstudio's scripts or eval utilities (that would close an import cycle).
"""

from __future__ import annotations

from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from aenerf_ns.aenerf.aenerf_model import AENeRFModelConfig
from aenerf_ns.aenerf.model_presets import fast_engine
from aenerf_ns.aenerf.region_sampler import RegionPixelSamplerConfig
from aenerf_ns.data.talking_head_datamanager import TalkingHeadDataManagerConfig
from aenerf_ns.method_configs.common import MOUTH_SUPERVISION, TINY_FIELDS, talking_head_trainer, tiny_trainer

SEAMLESS_BLEND = dict(sample_blend="masked-fields", mask_loss_mult=0.01)
"""The presets' blend of the two fields: each field's matter only inside its own mask, and a mask loss ten times
the paper's, so the audio field keeps to the lower face (docs/aenerf.md, *Where the seam comes from*)."""


def mouth_focused_sampler() -> RegionPixelSamplerConfig:
    """The paper's region-wise sampler with a fifth of the batch on the open mouth and its lips, out of 35% from
    the audio region (docs/aenerf.md, *The mouth*)."""
    return RegionPixelSamplerConfig(audio_region_fraction=0.35, mouth_fraction=0.2)


def aenerf_config() -> TrainerConfig:
    """Full-size AE-NeRF (GPU)."""
    datamanager = TalkingHeadDataManagerConfig(
        train_num_rays_per_batch=2048, eval_num_rays_per_batch=2048, pixel_sampler=mouth_focused_sampler()
    )
    model = AENeRFModelConfig(
        eval_num_rays_per_chunk=4096, **fast_engine(tiny=False), **MOUTH_SUPERVISION, **SEAMLESS_BLEND
    )
    return talking_head_trainer("aenerf", datamanager, model)


def aenerf_tiny_config() -> TrainerConfig:
    """Small fields, few samples and rays: trains on a CPU in minutes on the synthetic sample."""
    model = AENeRFModelConfig(
        **{**TINY_FIELDS, **fast_engine(tiny=True), **MOUTH_SUPERVISION, **SEAMLESS_BLEND},
        reference_feature_dim=16,
        aggregation_dim=32,
        aggregation_heads=2,
        condition_dim=16,
        warper_hidden_dim=32,
    )
    return tiny_trainer(aenerf_config(), "aenerf-tiny", model)


aenerf_method = MethodSpecification(
    config=aenerf_config(),
    description="AE-NeRF: audio-driven talking head (audio-aware aggregation, dual fields, region sampling)",
)
aenerf_tiny_method = MethodSpecification(
    config=aenerf_tiny_config(),
    description="AE-NeRF CPU preset: tiny fields and few rays for quick runs on the synthetic sample",
)
