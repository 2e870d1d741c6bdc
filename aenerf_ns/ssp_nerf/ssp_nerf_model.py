"""SSP-NeRF for nerfstudio: one audio-conditioned field for head and torso, with a parsing branch.

Per sample point the model
1. moves points below the head by the torso deformation (`model_components/torso_deformation`), conditioned on the
   frame's head pose and a per-frame latent code;
2. evaluates one field F(x', d, a) for density, colour and parsing-class logits, where `a` is the
   frame's smoothed audio code (the same audio code network and smoothing as AE-NeRF, `audio_driven_model`);
3. renders colour, depth and parsing probabilities (background = 1 - opacity), composited over the
   identity's background plate.

Training rays come from the semantic-aware dynamic sampler (`semantic_sampler`); after every step the
model feeds it the per-class photometric loss of the batch, and logs the sampler's allocation (also shown
in the viewer). Ablation switches: `use_torso_deformation` here, `semantic_aware` on the sampler.
Choices the paper leaves open are listed in docs/ssp-nerf.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.viewer.viewer_elements import ViewerText
from torch import Tensor

from aenerf_ns.data.parsing_labels import LABEL_NAMES
from aenerf_ns.data.talking_head_metadata import talking_head_metadata
from aenerf_ns.model_components.torso_deformation import TorsoDeformationSettings
from aenerf_ns.models.talking_head_model import (
    TalkingHeadModel,
    TalkingHeadModelConfig,
    repeat_per_sample,
    select_rays,
)


@dataclass
class SSPNeRFModelConfig(TalkingHeadModelConfig, TorsoDeformationSettings):
    """SSP-NeRF model settings."""

    _target: type = field(default_factory=lambda: SSPNeRFModel)
    torso_offset_loss_mult: float = 1e-3
    """Weight of the mean squared torso offset (keeps deformations as small as the data allows)."""


class SSPNeRFModel(TalkingHeadModel):
    """See the module docstring."""

    config: SSPNeRFModelConfig
    per_sample_outputs = ("torso_offsets",)

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        self.field = self.make_field(self.audio_dim)
        mean_pose = talking_head_metadata(self.kwargs.get("metadata")).camera_pose_mean
        self.register_buffer("mean_pose", mean_pose.float().reshape(12).clone())
        self.torso = cfg.torso_deformation(self.num_train_data)
        self.sampler_allocation = torch.full((self.num_classes,), 1.0 / self.num_classes)
        self._class_stats: tuple[Tensor, Tensor] | None = None
        self.viewer_allocation = ViewerText("Ray allocation", "not started", disabled=True,
                                            hint="share of training rays per parsing class")  # fmt: skip

    # ------------------------------------------------------------------ sampler feedback
    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> list:
        pipeline = training_callback_attributes.pipeline
        sampler = getattr(getattr(pipeline, "datamanager", None), "train_pixel_sampler", None)

        def feed_sampler(step: int) -> None:
            if self._class_stats is None:
                return
            if hasattr(sampler, "update"):
                sampler.update(*self._class_stats)
                self.sampler_allocation = sampler.shares().clone()
                text = ", ".join(f"{n} {100 * float(p):.0f}%" for n, p in zip(LABEL_NAMES, self.sampler_allocation))
                self.viewer_allocation.value = text
            self._class_stats = None

        sampling = super().get_training_callbacks(training_callback_attributes)
        return sampling + [TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], feed_sampler)]

    # ------------------------------------------------------------------ rendering
    def _ray_conditions(self, ray_bundle: RayBundle) -> tuple[Float[Tensor, "R 12"], Float[Tensor, "R L"] | None]:
        metadata = ray_bundle.metadata or {}
        n = ray_bundle.origins.shape[0]
        if "camera_pose" in metadata:
            pose = metadata["camera_pose"].reshape(n, 12) - self.mean_pose
        else:  # the viewer's free camera: the torso at its mean pose
            pose = torch.zeros(n, 12, device=ray_bundle.origins.device)
        latents = None
        if self.torso is not None:
            frames = metadata.get("train_frame") if self.training else None
            latents = self.torso.frame_latents(frames, n)
        return pose, latents

    def _render(
        self,
        ray_samples: RaySamples,
        codes: Float[Tensor, "R code"] | None,
        pose: Float[Tensor, "R 12"],
        latents: Float[Tensor, "R latent"] | None,
    ) -> dict[str, Tensor]:
        """One pass: torso deformation, the field, then volume rendering."""
        positions = ray_samples.frustums.get_positions()
        num_samples = positions.shape[1]
        pos = positions.reshape(-1, 3)
        dirs = ray_samples.frustums.directions.reshape(-1, 3)
        offsets = None
        if self.torso is not None:
            offsets = self.torso(pos, repeat_per_sample(pose, num_samples), repeat_per_sample(latents, num_samples))
            pos = pos + offsets
        out = self.field(pos, dirs, repeat_per_sample(codes, num_samples), None)
        per_ray = (*positions.shape[:2], -1)
        probs = torch.softmax(out["semantics"], -1)
        result = self.render_samples(
            ray_samples, out["density"].reshape(per_ray), out["rgb"].reshape(per_ray), probs.reshape(per_ray)
        )
        if offsets is not None:
            result["torso_offsets"] = offsets
        return result

    def render_rays(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        codes = self.ray_audio_codes(ray_bundle)
        pose, latents = self._ray_conditions(ray_bundle)
        passes, outputs = self.render_passes(
            ray_bundle,
            lambda samples, _, rays: self._render(
                samples, select_rays(codes, rays), select_rays(pose, rays), select_rays(latents, rays)
            ),
        )
        if self.training and self.torso is not None:
            outputs["torso_offsets"] = torch.cat([rendered["torso_offsets"] for rendered in passes.values()])
        return outputs

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box: OrientedBox | None = None) -> dict[str, Tensor]:
        """Dataset and render cameras (they carry audio) condition the torso on their own pose."""
        metadata = camera.metadata
        if metadata is not None and "audio_index" in metadata and "camera_pose" not in metadata:
            pose = camera.camera_to_worlds.reshape(-1, 12)[:1]
            camera.metadata = {**metadata, "camera_pose": pose}
            try:
                return super().get_outputs_for_camera(camera, obb_box=obb_box)
            finally:
                camera.metadata = metadata
        return super().get_outputs_for_camera(camera, obb_box=obb_box)

    # ------------------------------------------------------------------ losses and metrics
    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        metrics = super().get_metrics_dict(outputs, batch)
        if "parsing" in batch and self.training:
            labels = batch["parsing"].to(self.device).long().reshape(-1)
            measured = torch.bincount(labels, minlength=self.num_classes).float() / labels.numel()
            for k, name in enumerate(LABEL_NAMES):
                metrics[f"rays_{name}_fraction"] = measured[k]
                metrics[f"sampler_{name}_share"] = self.sampler_allocation[k].to(self.device)
        return metrics

    def method_losses(self, outputs, batch, labels) -> dict[str, Tensor]:
        """The torso offset loss; in training, also records this batch's error per class for the sampler."""
        if labels is not None and self.training:  # what the semantic sampler learns from
            gt = batch["image"].to(self.device)[..., :3]
            per_ray = ((self.composited(outputs, batch).detach() - gt) ** 2).mean(-1).reshape(-1)
            sums = torch.zeros(self.num_classes, device=per_ray.device).index_add_(0, labels, per_ray)
            counts = torch.bincount(labels, minlength=self.num_classes).float()
            self._class_stats = (sums, counts)
        loss = {}
        if self.torso is not None and "torso_offsets" in outputs and self.config.torso_offset_loss_mult > 0:
            loss["torso_offset_loss"] = (
                self.config.torso_offset_loss_mult * (outputs["torso_offsets"] ** 2).sum(-1).mean()
            )
        return loss
