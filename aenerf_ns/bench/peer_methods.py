"""nerfstudio's own methods as audio-blind peers, trained on talking-head datasets.

`nerfacto` (static) and `dnerf` (time-conditioned NeRF) read the same frames through the talking-head
dataparser, so they train and are scored on exactly the frames our methods see. They know nothing of the
audio; they set the floor an audio-driven method must beat on the lower face. dnerf gets each frame's
time in its clip (`frame_times`). Held-out frames lie after the training part, at times it never saw;
they are rendered at the last training frame's time (asked for later times, its deformation field
extrapolates and the render falls apart).

Both build LPIPS when their model is created, which would download AlexNet weights; their models here
(`OfflineNerfactoModel`, `CompactNeRFModel`) get a stand-in that reports NaN instead, unless the weights are
already on disk, so nothing is downloaded.
"""

from __future__ import annotations

import builtins
import copy
import types
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from nerfstudio.field_components.encodings import NeRFEncoding
from nerfstudio.fields.vanilla_nerf_field import NeRFField
from nerfstudio.models.base_model import Model
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from nerfstudio.models.vanilla_nerf import NeRFModel, VanillaModelConfig

PEERS = ("nerfacto", "dnerf")
"""Peer method names."""


def _lpips_weights_present() -> bool:
    from aenerf_ns.utils.offline_weights import alexnet_weights_path

    return alexnet_weights_path().is_file()


class NaNLPIPS(torch.nn.Module):
    """Stands in for torchmetrics' LPIPS when AlexNet's weights are not on disk: every score is NaN."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return torch.tensor(float("nan"))


_LPIPS_MODULE = "torchmetrics.image.lpip"


def _import_with_lpips_stand_in(name, globals=None, locals=None, fromlist=(), level=0):
    if name == _LPIPS_MODULE and level == 0:
        return types.SimpleNamespace(LearnedPerceptualImagePatchSimilarity=NaNLPIPS)
    return builtins.__import__(name, globals, locals, fromlist, level)


def populate_without_download(populate: Callable[[Model], None], model: Model) -> None:
    """Run nerfstudio's `populate` (a `populate_modules`) on `model` without fetching AlexNet's weights.

    nerfacto and vanilla NeRF import and build torchmetrics' LPIPS inside `populate_modules`, which would
    download the weights when they are not on disk. There is no argument to avoid that, so when the weights
    are absent `populate` runs as a copy of the function whose own `import` statements get `NaNLPIPS` for
    LPIPS: nothing of torchmetrics is changed, and every other caller still gets the real class.
    """
    if _lpips_weights_present():
        populate(model)
        return
    scope = dict(populate.__globals__)
    scope["__builtins__"] = dict(vars(builtins), __import__=_import_with_lpips_stand_in)
    code, name = populate.__code__, populate.__name__
    types.FunctionType(code, scope, name, populate.__defaults__, populate.__closure__)(model)


@dataclass
class OfflineNerfactoModelConfig(NerfactoModelConfig):
    """nerfstudio's nerfacto, built without downloading LPIPS weights (`populate_without_download`)."""

    _target: type = field(default_factory=lambda: OfflineNerfactoModel)


class OfflineNerfactoModel(NerfactoModel):
    """NerfactoModel whose LPIPS reports NaN unless AlexNet's weights are on disk."""

    config: OfflineNerfactoModelConfig

    def populate_modules(self):
        populate_without_download(NerfactoModel.populate_modules, self)


@dataclass
class CompactNeRFModelConfig(VanillaModelConfig):
    """nerfstudio's vanilla NeRF / D-NeRF with configurable MLP sizes (its own are fixed at 8 x 256)."""

    _target: type = field(default_factory=lambda: CompactNeRFModel)
    base_mlp_num_layers: int = 8
    """Layers of each field's density MLP."""
    base_mlp_layer_width: int = 256
    """Width of each field's density MLP."""
    head_mlp_layer_width: int = 128
    """Width of each field's colour head."""


class CompactNeRFModel(NeRFModel):
    """NeRFModel whose coarse and fine fields take their MLP sizes from the config (and whose LPIPS reports
    NaN unless AlexNet's weights are on disk)."""

    config: CompactNeRFModelConfig

    def populate_modules(self):
        populate_without_download(NeRFModel.populate_modules, self)
        cfg = self.config
        skips = (4,) if cfg.base_mlp_num_layers > 4 else ()
        for name in ("field_coarse", "field_fine"):
            setattr(
                self,
                name,
                NeRFField(
                    position_encoding=NeRFEncoding(
                        in_dim=3, num_frequencies=10, min_freq_exp=0.0, max_freq_exp=8.0, include_input=True
                    ),
                    direction_encoding=NeRFEncoding(
                        in_dim=3, num_frequencies=4, min_freq_exp=0.0, max_freq_exp=4.0, include_input=True
                    ),
                    base_mlp_num_layers=cfg.base_mlp_num_layers,
                    base_mlp_layer_width=cfg.base_mlp_layer_width,
                    head_mlp_layer_width=cfg.head_mlp_layer_width,
                    skip_connections=skips,
                ),
            )


def peer_config(name: str, data: Path, rays: int, small: bool, train_fraction: float = 0.5):
    """A TrainerConfig for peer `name` on a talking-head dataset.

    Both peers get the near/far bounds our models use. `small` shrinks the networks for CPU runs
    (nerfacto: torch hash grid with 8 levels of 2^15 entries, 32+16 proposal and 16 field samples;
    dnerf: 4 x 64 fields, a 3 x 64 deformation MLP, 16+16 samples, like our CPU presets). Camera pose
    optimisation is off, as for ours.
    """
    from nerfstudio.configs.method_configs import method_configs
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig

    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
    from aenerf_ns.models.talking_head_model import TalkingHeadModelConfig

    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose from {PEERS}")
    config = copy.deepcopy(method_configs[name])
    parser = TalkingHeadDataParserConfig(data=Path(data), frame_times=(name == "dnerf"), train_fraction=train_fraction)
    config.pipeline.datamanager = VanillaDataManagerConfig(
        dataparser=parser, train_num_rays_per_batch=rays, eval_num_rays_per_batch=rays
    )
    bounds = TalkingHeadModelConfig()
    if name == "nerfacto":
        old = config.pipeline.model
        model = OfflineNerfactoModelConfig(**{f.name: getattr(old, f.name) for f in fields(old) if f.name != "_target"})
        config.pipeline.model = model
        model.near_plane, model.far_plane = bounds.near_plane, bounds.far_plane
        model.camera_optimizer.mode = "off"
        model.implementation = "torch" if small or not torch.cuda.is_available() else "tcnn"
        if small:
            model.num_levels, model.log2_hashmap_size, model.max_res = 8, 15, 256
            model.num_proposal_samples_per_ray = (32, 16)
            model.num_nerf_samples_per_ray = 16
            model.hidden_dim = 32
    else:
        old = config.pipeline.model
        model = CompactNeRFModelConfig(
            enable_temporal_distortion=True,
            temporal_distortion_params=dict(old.temporal_distortion_params),
            collider_params={"near_plane": bounds.near_plane, "far_plane": bounds.far_plane},
            background_color="last_sample",
        )
        if small:
            model.num_coarse_samples = model.num_importance_samples = 16
            model.base_mlp_num_layers, model.base_mlp_layer_width, model.head_mlp_layer_width = 4, 64, 64
            model.temporal_distortion_params.update(mlp_num_layers=3, mlp_layer_width=64, skip_connections=())
        config.pipeline.model = model
    model.eval_num_rays_per_chunk = 2048
    return config
