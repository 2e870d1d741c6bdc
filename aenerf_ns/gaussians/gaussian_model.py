"""aenerf-gs: a Gaussian-splatting talking head with AE-NeRF's split into an audio and a non-audio part.

The person is a set of 3D Gaussians in head coordinates (centre, rotation, scale, opacity, colour and parsing-class
logits), started from the training frames' person pixels (`initial_gaussians`). Every frame,
1. the audio-region Gaussians (those that started on the lower face or in the mouth) are moved, turned, resized,
   faded and recoloured by the audio deformation (`audio_deformation`) from the frame's smoothed audio code, the
   same audio code network and smoothing as the NeRF methods (`models/audio_driven_model`);
2. the other Gaussians never see audio: those of the torso follow the head pose through SSP-NeRF's torso
   deformation (`model_components/torso_deformation`), the head's stay where head coordinates hold them;
3. all are splatted (`splatting`: gsplat's CUDA rasterizer on a GPU, a pure-torch rasterizer elsewhere) into
   colour, parsing probabilities (background = 1 - opacity) and depth, and composited over the identity's
   background plate like the NeRF methods.

Training renders whole frames (`data/talking_head_image_datamanager`): L1 + D-SSIM on the composited image, with
the lower face weighted up (`audio_region_loss_mult`, the Gaussian counterpart of AE-NeRF's region-wise ray
sampling), the parsing cross-entropy, and a small penalty on audio offsets. gsplat's DefaultStrategy grows and prunes
the Gaussians (`densification`). Choices are listed in docs/gaussians.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.model_components import renderers
from torch import Tensor, nn

from aenerf_ns.data.parsing_labels import AUDIO_REGION_LABELS
from aenerf_ns.data.talking_head_metadata import talking_head_metadata
from aenerf_ns.gaussians.audio_deformation import AudioDeformation
from aenerf_ns.gaussians.densification import Densification, DensificationConfig
from aenerf_ns.gaussians.initial_gaussians import seed_points
from aenerf_ns.gaussians.splatting import Backend, splat, world_to_camera
from aenerf_ns.model_components.torso_deformation import TorsoDeformationSettings
from aenerf_ns.models.audio_driven_model import AudioDrivenModel, AudioDrivenModelConfig
from aenerf_ns.utils.image_metrics import ssim

GAUSSIAN_PARAMETERS = ("means", "scales", "quats", "opacities", "colors", "semantics")
"""The per-Gaussian parameters, each with an optimizer of its own (gsplat's strategy rewrites them)."""


class WrongCheckpointError(ValueError):
    """A checkpoint that does not hold this method's Gaussians."""


@dataclass
class GaussianTalkingHeadModelConfig(AudioDrivenModelConfig, TorsoDeformationSettings):
    """aenerf-gs model settings."""

    _target: type = field(default_factory=lambda: GaussianTalkingHeadModel)
    enable_collider: bool = False
    """Splatting renders whole cameras, not rays: there are no rays to clip."""
    num_gaussians: int = 20000
    """Gaussians lifted from the training frames at the start (densification adds and removes some)."""
    seed_frames: int = 8
    """Evenly spaced training frames whose person pixels seed the Gaussians."""
    seed_audio_region_weight: float = 3.0
    """How much likelier a lower-face or mouth pixel seeds a Gaussian than another person pixel."""
    initial_opacity: float = 0.5
    """Opacity every Gaussian starts with."""
    audio_hidden_dim: int = 64
    """Width of the audio deformation's MLP."""
    audio_num_layers: int = 2
    """Hidden layers of the audio deformation's MLP."""
    audio_num_frequencies: int = 6
    """Frequencies of the encoding of canonical centres the audio deformation reads."""
    audio_max_offset: float = 0.1
    """Largest audio-driven move of a Gaussian (head units; the head is about one unit in radius)."""
    audio_offset_loss_mult: float = 1e-2
    """Weight of the mean squared audio-driven position offset."""
    ssim_lambda: float = 0.2
    """Share of D-SSIM (1 - SSIM) in the photometric loss; the rest is L1."""
    audio_region_loss_mult: float = 1.0
    """Extra L1 weight of lower-face and mouth pixels (1 doubles their weight; 0 weighs every pixel alike)."""
    densification: DensificationConfig = field(default_factory=DensificationConfig)
    """When Gaussians are cloned, split and pruned (gsplat's DefaultStrategy)."""
    rasterizer: Backend = "auto"
    """gsplat's CUDA rasterizer on a GPU and the pure-torch one otherwise (auto), or either one by name."""


class GaussianTalkingHeadModel(AudioDrivenModel):
    """See the module docstring."""

    config: GaussianTalkingHeadModelConfig
    supports_data_parallel = False
    """Densification and pruning change the parameter set, which DistributedDataParallel cannot follow."""

    # ------------------------------------------------------------------ construction
    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        meta = talking_head_metadata(self.kwargs.get("metadata"))
        seeds = seed_points(meta, cfg.num_gaussians, cfg.seed_frames, cfg.seed_audio_region_weight)
        n = len(seeds.positions)
        semantics = torch.full((n, self.num_classes - 1), -2.0)
        semantics[torch.arange(n), seeds.labels - 1] = 2.0  # foreground classes only: background = not hit
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        self.gauss_params = nn.ParameterDict(
            {
                "means": nn.Parameter(seeds.positions),
                "scales": nn.Parameter(torch.log(seeds.spacing)[:, None].repeat(1, 3)),
                "quats": nn.Parameter(quats),
                "opacities": nn.Parameter(torch.full((n,), math.log(cfg.initial_opacity / (1 - cfg.initial_opacity)))),
                "colors": nn.Parameter(torch.logit(seeds.colors.clamp(0.02, 0.98))),
                "semantics": nn.Parameter(semantics),
            }
        )
        self.register_buffer("audio_member", torch.isin(seeds.labels, torch.tensor(AUDIO_REGION_LABELS)))
        self.register_buffer("mean_pose", meta.camera_pose_mean.float().reshape(12).clone())
        self.audio_deformation = (
            AudioDeformation(
                self.audio_dim,
                cfg.audio_hidden_dim,
                cfg.audio_num_layers,
                cfg.audio_num_frequencies,
                cfg.audio_max_offset,
            )
            if self.audio_dim
            else None
        )
        self.torso = cfg.torso_deformation(self.num_train_data)
        self.densification = Densification(cfg.densification)
        self._optimizers: dict = {}
        self._step = 0
        self._info: dict | None = None
        self._crop: OrientedBox | None = None  # the viewer's crop box while it renders

    @property
    def num_gaussians(self) -> int:
        return self.gauss_params["means"].shape[0]

    def get_param_groups(self) -> dict[str, list[nn.Parameter]]:
        """One group per Gaussian parameter (gsplat's strategy needs an optimizer each), and `fields` for the
        networks (audio code and smoothing, deformations)."""
        groups = {name: [self.gauss_params[name]] for name in GAUSSIAN_PARAMETERS}
        gaussian_ids = {id(p) for p in self.gauss_params.values()}
        groups["fields"] = [p for p in self.parameters() if p.requires_grad and id(p) not in gaussian_ids]
        return groups

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> list:
        """Densification: the step and optimizers before each iteration, growing and pruning after it."""
        optimizers = training_callback_attributes.optimizers

        def before(step: int) -> None:
            self._step = step
            self._optimizers = {name: optimizers.optimizers[name] for name in GAUSSIAN_PARAMETERS}

        def after(step: int) -> None:
            if self._info is None or self._info["means2d"].grad is None:
                return
            carried = self.densification.after_backward(
                self.gauss_params, self._optimizers, step, self._info, {"audio_member": self.audio_member}
            )
            self.audio_member = carried["audio_member"]
            self._info = None

        return [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], before),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], after),
        ]

    # ------------------------------------------------------------------ checkpoints
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Resize the Gaussians (and their labels) to the checkpoint's count before loading it. The parameters keep
        their identity, so optimizers built before loading (a resumed run) still hold them."""
        if "gauss_params.means" not in state_dict:
            raise WrongCheckpointError(
                "the checkpoint holds no Gaussians (gauss_params.means): it was not written by aenerf-gs; load it "
                "with the config.yml of the run that wrote it"
            )
        n = state_dict["gauss_params.means"].shape[0]
        for param in self.gauss_params.values():
            param.data = param.data.new_zeros((n, *param.shape[1:]))
        self.audio_member = self.audio_member.new_zeros(n)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ rendering
    def _frame_gaussians(self, camera: Cameras) -> dict[str, Tensor]:
        """This frame's Gaussians: canonical ones moved by the audio (audio region) or the head pose (torso)."""
        params = self.gauss_params
        means, quats, log_scales = params["means"], params["quats"], params["scales"]
        opacity_logits, color_logits = params["opacities"], params["colors"]
        offsets = None
        codes = self.audio_codes(camera.metadata, 1)
        if self.audio_deformation is not None and codes is not None and self.audio_member.any():
            member = self.audio_member.nonzero()[:, 0]
            offsets = self.audio_deformation(means[member], codes)
            means = means.index_add(0, member, offsets.position)
            quats = quats.index_add(0, member, offsets.rotation)
            log_scales = log_scales.index_add(0, member, offsets.log_scale)
            opacity_logits = opacity_logits.index_add(0, member, offsets.opacity[:, 0])
            color_logits = color_logits.index_add(0, member, offsets.color)
        if self.torso is not None:
            rest = (~self.audio_member).nonzero()[:, 0]
            pose = camera.camera_to_worlds.reshape(1, 12).to(means) - self.mean_pose
            frame = (camera.metadata or {}).get("cam_idx") if self.training else None
            frames = None if frame is None else torch.tensor([int(frame)], device=means.device)
            latent = self.torso.frame_latents(frames, 1)
            moved = self.torso(means[rest], pose.expand(len(rest), -1), latent.expand(len(rest), -1))
            means = means.index_add(0, rest, moved)
        return {
            "means": means,
            "quats": quats,
            "scales": torch.exp(log_scales),
            "opacities": torch.sigmoid(opacity_logits),
            "colors": torch.sigmoid(color_logits),
            "semantics": torch.softmax(params["semantics"], -1),
            "audio_offsets": offsets.position if offsets is not None else means.new_zeros(0, 3),
        }

    def get_outputs(self, camera: Cameras) -> dict[str, Tensor]:
        """Render one camera: colour (foreground, not yet over the plate), opacity, depth (distance from the camera
        centre), parsing probabilities over all classes and the audio-region probability."""
        if not isinstance(camera, Cameras) or camera.shape[0] != 1:
            raise ValueError("aenerf-gs renders one camera at a time (a Cameras of shape (1,))")
        camera = camera.to(self.device)
        gaussians = self._frame_gaussians(camera)
        if self._crop is not None:
            keep = self._crop.within(gaussians["means"]).reshape(-1)
            gaussians = {k: v[keep] if k != "audio_offsets" else v for k, v in gaussians.items()}
        c2w = camera.camera_to_worlds[0]
        width, height = int(camera.width[0, 0]), int(camera.height[0, 0])
        if len(gaussians["means"]) == 0:  # the viewer's crop box holds none: only the background shows
            return self._nothing_rendered(height, width, c2w, gaussians["audio_offsets"])
        distance = (gaussians["means"] - c2w[:3, 3]).norm(dim=-1, keepdim=True)
        features = torch.cat([gaussians["colors"], gaussians["semantics"], distance], -1)
        result = splat(
            gaussians["means"], gaussians["quats"], gaussians["scales"], gaussians["opacities"], features,
            world_to_camera(c2w), camera.get_intrinsics_matrices()[0].to(c2w), width, height,
            backend=self.config.rasterizer,
        )  # fmt: skip
        if self.training and self._crop is None:
            self._info = {
                "means2d": result.means2d, "radii": result.radii, "width": width, "height": height,
                "n_cameras": 1, "gaussian_ids": None,
            }  # fmt: skip
            if result.means2d.requires_grad:
                self.densification.before_backward(self.gauss_params, self._optimizers, self._step, self._info)
        alpha = result.alpha
        foreground = result.render[..., 3:-1]
        parsing = torch.cat([(1.0 - alpha).clamp_min(0.0), foreground], -1)
        depth = torch.where(alpha > 1e-6, result.render[..., -1:] / alpha.clamp_min(1e-6), distance.max().detach())
        return {
            "rgb": result.render[..., :3],
            "accumulation": alpha,
            "depth": depth,
            "parsing_probs": parsing,
            "audio_region": parsing[..., self.region_ids].sum(-1, keepdim=True),
            "audio_offsets": gaussians["audio_offsets"],
            **self.mouth_shape_outputs(camera.metadata),
        }

    def _nothing_rendered(
        self, height: int, width: int, c2w: Float[Tensor, "3 4"], audio_offsets: Tensor
    ) -> dict[str, Tensor]:
        """`get_outputs` of a frame no Gaussian covers: no colour, no opacity, every pixel background, depth the
        distance to the head's origin."""
        zeros = c2w.new_zeros(height, width, 1)
        parsing = c2w.new_zeros(height, width, self.num_classes)
        parsing[..., 0] = 1.0
        return {
            "rgb": c2w.new_zeros(height, width, 3),
            "accumulation": zeros,
            "depth": zeros + c2w[:3, 3].norm(),
            "parsing_probs": parsing,
            "audio_region": zeros.clone(),
            "audio_offsets": audio_offsets,
        }

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box: OrientedBox | None = None) -> dict[str, Tensor]:
        self._crop = obb_box
        try:
            outputs = self.get_outputs(camera[0:1] if camera.shape[0] > 1 else camera)
        finally:
            self._crop = None
        outputs.pop("audio_offsets")
        outputs = self.finish_camera_outputs(outputs, camera)
        override = renderers.BACKGROUND_COLOR_OVERRIDE
        if override is not None:  # the viewer's crop colour: splatting has no ray renderer to blend it in
            outputs["rgb"] = outputs["rgb"] + (1.0 - outputs["accumulation"]) * override.to(outputs["rgb"])
        return outputs

    # ------------------------------------------------------------------ losses and metrics
    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        metrics = super().get_metrics_dict(outputs, batch)
        metrics["num_gaussians"] = torch.tensor(float(self.num_gaussians))
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, Tensor]:
        cfg = self.config
        gt = batch["image"].to(self.device)[..., :3]
        pred = self.composited(outputs, batch)
        weight = torch.ones_like(gt[..., :1])
        if "audio_region" in batch and cfg.audio_region_loss_mult > 0:
            weight = weight + cfg.audio_region_loss_mult * batch["audio_region"].to(self.device).float()
        l1 = ((pred - gt).abs() * weight).sum() / (3 * weight.sum())
        loss = {"rgb_loss": (1 - cfg.ssim_lambda) * l1 + cfg.ssim_lambda * (1 - ssim(pred, gt))}
        if "parsing" in batch and cfg.parsing_loss_mult > 0:
            labels = batch["parsing"].to(self.device)
            loss["parsing_loss"] = cfg.parsing_loss_mult * self.parsing_nll(outputs["parsing_probs"], labels)
        offsets = outputs.get("audio_offsets")
        if offsets is not None and len(offsets) and cfg.audio_offset_loss_mult > 0:
            loss["audio_offset_loss"] = cfg.audio_offset_loss_mult * (offsets**2).sum(-1).mean()
        loss.update(self.mouth_target_losses(outputs))
        return loss
