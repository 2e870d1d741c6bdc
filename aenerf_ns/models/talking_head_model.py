"""What the ray-based talking-head models (AE-NeRF, SSP-NeRF) share on top of `audio_driven_model`.

AE-NeRF and SSP-NeRF differ in their fields and ray sampling; besides the audio path, background plates,
parsing classes and metrics of every talking-head model (`audio_driven_model.AudioDrivenModel`), they share
- the ray sampling, coarse-to-fine through the fields (two passes) or proposal fields then one pass through
  the fields (`proposal_sampling`), and the volume rendering of a pass's samples into colour, opacity, depth
  and parsing probabilities (`render_samples`), on flat ray batches (`render_rays`; `get_outputs` flattens);
- the photometric losses of every pass (weighted by a sampler's per-ray weights) and the per-pass parsing
  cross-entropy (background is what the ray does not hit);
- `get_outputs_for_camera`: the camera's rays rendered in chunks, then composited over the plate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.model_components.ray_samplers import PDFSampler, UniformSampler
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer, SemanticRenderer
from nerfstudio.model_components.scene_colliders import NearFarCollider
from nerfstudio.models.base_model import Model
from torch import Tensor, nn

from aenerf_ns.fields.audio_field import AudioConditionedField
from aenerf_ns.model_components.proposal_sampling import ProposalSamplingConfig
from aenerf_ns.models.audio_driven_model import AudioDrivenModel, AudioDrivenModelConfig


def repeat_per_sample(values: Tensor | None, num_samples: int) -> Tensor | None:
    """Per-ray values (R, ...) repeated for each of a ray's samples, flat: (R * num_samples, ...)."""
    if values is None:
        return None
    rest = values.shape[1:]
    return values[:, None].expand(values.shape[0], num_samples, *rest).reshape(-1, *rest)


def select_rays(values: Tensor | None, rays: Tensor | None) -> Tensor | None:
    """The rows of per-ray `values` for the ray indices `rays` (all of them when `rays` is None)."""
    return values if values is None or rays is None else values[rays]


@dataclass
class TalkingHeadModelConfig(AudioDrivenModelConfig):
    """Settings shared by the ray-based talking-head models."""

    _target: type = field(default_factory=lambda: TalkingHeadModel)
    near_plane: float = 3.5
    """Distance from the camera where rays start (head coordinates: the camera is about 6 units away)."""
    far_plane: float = 8.5
    """Distance from the camera where rays end."""
    ray_sampling: Literal["two-pass", "proposal"] = "two-pass"
    """Where the fields are evaluated: a coarse and a fine pass through them, or once, at samples placed by
    small audio-free proposal density fields (`proposal` settings)."""
    num_coarse_samples: int = 64
    """Stratified samples per ray (coarse pass; two-pass sampling only)."""
    num_importance_samples: int = 64
    """Samples per ray drawn where the coarse pass found density (fine pass; two-pass sampling only)."""
    proposal: ProposalSamplingConfig = field(default_factory=ProposalSamplingConfig)
    """Proposal fields and sample counts (proposal sampling only)."""
    position_encoding: Literal["positional", "hashgrid", "triplane"] = "positional"
    """Field position encoding: the paper's frequency encoding + deep MLP, or a hash grid or tri-planes +
    shallow MLP."""
    hidden_dim: int = 256
    """Width of each field's MLP."""
    num_layers: int = 8
    """Hidden layers of each field's density MLP."""
    num_frequencies: int = 10
    """Positional-encoding frequencies (positional encoding only)."""
    hash_levels: int = 16
    """Hash-grid resolution levels (hash grid only)."""
    hash_log2_size: int = 19
    """log2 of each hash-grid level's table size (hash grid only)."""
    hash_max_resolution: int = 1024
    """Finest hash-grid resolution (hash grid only)."""
    triplane_resolutions: tuple[int, ...] = (64, 128, 256)
    """Resolution of each tri-plane level (tri-plane only)."""
    triplane_features: int = 4
    """Features per plane and level (tri-plane only)."""
    audio_attention: bool = False
    """Scale the audio code, per point, by weights read from the point's position encoding before the audio field
    sees it, so where audio acts is learned as a product instead of through the MLP (`audio_field`)."""
    enable_collider: bool = True
    """Clip rays to [near_plane, far_plane]."""


class TalkingHeadModel(AudioDrivenModel):
    """See the module docstring. Subclasses build their fields after `super().populate_modules()`."""

    config: TalkingHeadModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        self.sampler_uniform = UniformSampler(num_samples=cfg.num_coarse_samples)
        self.sampler_pdf = PDFSampler(num_samples=cfg.num_importance_samples)
        self.proposal_sampling = None
        if cfg.ray_sampling == "proposal":
            self.proposal_sampling = cfg.proposal.setup(aabb=self.scene_box.aabb)
        elif cfg.ray_sampling != "two-pass":
            raise ValueError(f"unknown ray_sampling {cfg.ray_sampling!r}: use 'two-pass' or 'proposal'")
        self.renderer_rgb = RGBRenderer(background_color="black")  # the foreground only: plates come later
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="expected")
        self.renderer_semantics = SemanticRenderer()
        if cfg.enable_collider:
            self.collider = NearFarCollider(near_plane=cfg.near_plane, far_plane=cfg.far_plane)

    def make_field(self, audio_code_dim: int, condition_dim: int = 0) -> AudioConditionedField:
        """A field with this model's size settings, predicting the foreground parsing classes."""
        cfg = self.config
        return AudioConditionedField(
            self.scene_box.aabb,
            num_semantic_classes=self.num_classes - 1,  # background is what the ray does not hit
            audio_code_dim=audio_code_dim,
            condition_dim=condition_dim,
            hidden_dim=cfg.hidden_dim,
            num_layers=cfg.num_layers,
            num_frequencies=cfg.num_frequencies,
            encoding=cfg.position_encoding,
            hash_levels=cfg.hash_levels,
            hash_log2_size=cfg.hash_log2_size,
            hash_max_resolution=cfg.hash_max_resolution,
            triplane_resolutions=cfg.triplane_resolutions,
            triplane_features=cfg.triplane_features,
            audio_attention=cfg.audio_attention,
        )

    def get_param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"fields": [p for p in self.parameters() if p.requires_grad]}

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> list:
        """The proposal sampler's annealing and step counter (none with two-pass sampling)."""
        callbacks: list[TrainingCallback] = []
        if self.proposal_sampling is not None:
            callbacks += self.proposal_sampling.training_callbacks()
        return callbacks

    def ray_audio_codes(self, ray_bundle: RayBundle) -> Float[Tensor, "R code"] | None:
        """Per-ray audio code (`AudioDrivenModel.audio_codes` of the rays' metadata)."""
        return self.audio_codes(ray_bundle.metadata, ray_bundle.origins.shape[0])

    # ------------------------------------------------------------------ rendering
    per_sample_outputs: tuple[str, ...] = ()
    """Outputs with a row per sample rather than per ray (for training losses): never reshaped to an image."""
    proposal_outputs: tuple[str, ...] = ("weights_list", "ray_samples_list")
    """Training outputs of proposal sampling (per-level weights and samples, for its losses): not per ray."""

    def render_rays(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        """The model's outputs for a flat (R,) ray bundle; `get_outputs` brings any other shape to this."""
        raise NotImplementedError

    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        shape = ray_bundle.shape
        if len(shape) == 1:
            return {**self.render_rays(ray_bundle), **self.mouth_shape_outputs(ray_bundle.metadata)}
        outputs = self.render_rays(ray_bundle.flatten())
        skipped = self.per_sample_outputs + self.proposal_outputs
        return {k: v.reshape(*shape, *v.shape[1:]) for k, v in outputs.items() if k not in skipped}

    def render_samples(
        self,
        ray_samples: RaySamples,
        density: Float[Tensor, "R S 1"],
        rgb: Float[Tensor, "R S 3"],
        probs: Float[Tensor, "R S classes"],
    ) -> dict[str, Tensor]:
        """Volume rendering of one pass: foreground colour (not yet over a plate), opacity, depth, the weights,
        and parsing probabilities over all classes, background being what the ray does not hit."""
        weights = ray_samples.get_weights(density)
        accumulation = self.renderer_accumulation(weights)
        foreground = self.renderer_semantics(probs, weights)
        return {
            "rgb": self.renderer_rgb(rgb=rgb, weights=weights),
            "accumulation": accumulation,
            "depth": self.renderer_depth(weights=weights, ray_samples=ray_samples),
            "parsing_probs": torch.cat([(1.0 - accumulation).clamp_min(0.0), foreground], -1),
            "weights": weights,
        }

    def render_passes(self, ray_bundle: RayBundle, render) -> tuple[dict[str, dict[str, Tensor]], dict]:
        """The passes through the fields the `ray_sampling` setting asks for.

        `render(samples, surface, rays)` shades one pass: `samples` of the rays with indices `rays` (None: all
        rays of the bundle), `surface` their distance to the head as the proposal fields see it (k, 1), or
        None (two-pass sampling). At inference with proposal sampling, rays the proposal fields find empty
        are not shaded (`ProposalSamplingConfig.empty_ray_threshold`).

        Returns the passes by output suffix ("_coarse" then "" with two-pass sampling, "" alone with proposal
        sampling), and the outputs every talking-head model has: the final pass's, the coarse pass's under
        "_coarse" names, and in training the proposal levels' weights and samples.
        """
        if self.proposal_sampling is None:
            samples_coarse = self.sampler_uniform(ray_bundle)
            coarse = render(samples_coarse, None, None)
            fine_samples = self.sampler_pdf(ray_bundle, samples_coarse, coarse["weights"])
            passes = {"_coarse": coarse, "": render(fine_samples, None, None)}
        else:
            samples, weights_list, ray_samples_list = self.proposal_sampling(ray_bundle)
            surface = self.proposal_sampling.surface_distance(weights_list[-1], ray_samples_list[-1])
            hit = None if self.training else self.proposal_sampling.rays_to_shade(weights_list[-1])
            if hit is None:
                passes = {"": render(samples, surface, None)}
            else:
                passes = {"": self._shade_hit_rays(render, samples, surface, hit)}
        final = passes[""]
        probs = final["parsing_probs"]
        outputs = {
            "rgb": final["rgb"],
            "accumulation": final["accumulation"],
            "depth": final["depth"],
            "parsing_probs": probs,
            "audio_region": probs[..., self.region_ids].sum(-1, keepdim=True),
        }
        if "_coarse" in passes:
            coarse = passes["_coarse"]
            outputs.update(
                rgb_coarse=coarse["rgb"],
                accumulation_coarse=coarse["accumulation"],
                parsing_probs_coarse=coarse["parsing_probs"],
            )
        elif self.training:
            outputs["weights_list"] = weights_list + [final["weights"]]
            outputs["ray_samples_list"] = ray_samples_list + [samples]
        return passes, outputs

    @staticmethod
    def _shade_hit_rays(render, samples: RaySamples, surface: Tensor, hit: Tensor) -> dict[str, Tensor]:
        """One pass shaded on the `hit` rays only; the others render as empty (no colour or opacity,
        background parsing, depth at the end of their interval)."""
        rays = hit.nonzero()[:, 0]
        part = render(samples[rays], surface[rays], rays)
        full = {}
        for key, value in part.items():
            if value.shape[:1] != rays.shape:
                full[key] = value
                continue
            full[key] = value.new_zeros(hit.shape[0], *value.shape[1:])
            full[key][rays] = value
        full["parsing_probs"][~hit, 0] = 1.0
        full["depth"][~hit] = samples.frustums.ends[~hit, -1]
        return full

    @staticmethod
    def pass_suffixes(outputs: dict[str, Tensor]) -> tuple[str, ...]:
        """Output-name suffixes of the passes in `outputs`: ("_coarse", "") for two passes, ("",) for one."""
        return ("_coarse", "") if "rgb_coarse" in outputs else ("",)

    def proposal_losses(self, outputs: dict) -> dict[str, Tensor]:
        """The proposal fields' losses in training with proposal sampling; nothing otherwise."""
        if self.proposal_sampling is None or "weights_list" not in outputs:
            return {}
        return self.proposal_sampling.losses(outputs["weights_list"], outputs["ray_samples_list"])

    # ------------------------------------------------------------------ losses and metrics
    def photometric_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """MSE of each pass against the batch (`rgb_loss_coarse`, and `rgb_loss_fine` for the final pass).
        A sampler that draws rays unevenly may attach `ray_weight` per ray; the loss is then the weighted
        mean, i.e. still the full-image mean in expectation."""
        gt = batch["image"].to(self.device)[..., :3]
        weight = batch.get("ray_weight")
        loss = {}
        for suffix in self.pass_suffixes(outputs):
            name = "rgb_loss" + (suffix or "_fine")
            pred = self.composited(outputs, batch, suffix)
            if weight is None:
                loss[name] = F.mse_loss(pred, gt)
            else:
                w = weight.to(self.device).reshape(-1, 1)
                loss[name] = ((pred - gt) ** 2 * w).sum() / (3 * w.sum())
        return loss

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, Tensor]:
        """Every pass's photometric and parsing losses, then the method's own (`method_losses`), the audio
        code's mouth-shape loss, then the proposal fields' (with proposal sampling)."""
        loss = self.photometric_losses(outputs, batch)
        labels = batch["parsing"].to(self.device).long().reshape(-1) if "parsing" in batch else None
        if labels is not None and self.config.parsing_loss_mult > 0:
            loss["parsing_loss"] = self._parsing_loss(outputs, labels)
        loss.update(self.method_losses(outputs, batch, labels))
        loss.update(self.mouth_target_losses(outputs))
        loss.update(self.proposal_losses(outputs))
        return loss

    def method_losses(
        self, outputs: dict[str, Tensor], batch: dict[str, Tensor], labels: Tensor | None
    ) -> dict[str, Tensor]:
        """Losses of a method's own parts; `labels` are the rays' parsing labels (None without parsing maps)."""
        return {}

    def _parsing_loss(self, outputs: dict[str, Tensor], labels: Tensor) -> Tensor:
        """Cross-entropy of each pass's rendered parsing probabilities against the label of each ray."""
        nll = sum(self.parsing_nll(outputs["parsing_probs" + suffix], labels) for suffix in self.pass_suffixes(outputs))
        return self.config.parsing_loss_mult * nll

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box: OrientedBox | None = None) -> dict[str, Tensor]:
        return self.finish_camera_outputs(Model.get_outputs_for_camera(self, camera, obb_box=obb_box), camera)
