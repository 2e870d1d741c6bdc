"""AE-NeRF model for nerfstudio: an audio-conditioned radiance field with a parsing branch.

Rendering composites the field's foreground over the dataset's static background plate, the way
talking-head NeRFs treat the fixed real camera's background. The parsing branch predicts the foreground
classes of every sample; background probability is what the ray leaves untouched (1 - accumulation), so
the parsing loss also teaches the field where the person ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.model_components.ray_samplers import PDFSampler, UniformSampler
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer
from nerfstudio.model_components.scene_colliders import NearFarCollider
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from torch import Tensor, nn

from aenerf_ns.audio_encoder import AudioEncoder, unique_rows_encode
from aenerf_ns.audio_field import AudioConditionedField
from aenerf_ns.image_metrics import masked_psnr, psnr, ssim
from aenerf_ns.parsing_labels import AUDIO_REGION_LABELS, LABEL_COLORS, LABEL_NAMES


@dataclass
class AENeRFModelConfig(ModelConfig):
    """AE-NeRF model settings."""

    _target: type = field(default_factory=lambda: AENeRFModel)
    near_plane: float = 3.5
    """Distance from the camera where rays start (head coordinates: the camera is about 6 units away)."""
    far_plane: float = 8.5
    """Distance from the camera where rays end."""
    num_coarse_samples: int = 64
    """Stratified samples per ray."""
    num_importance_samples: int = 64
    """Extra samples per ray drawn where the coarse pass found density."""
    hidden_dim: int = 128
    """Width of the field's MLP."""
    num_layers: int = 5
    """Hidden layers of the field's density MLP."""
    num_frequencies: int = 8
    """Positional-encoding frequencies."""
    audio_code_dim: int = 32
    """Size of the audio code fed to the field; 0 makes the model audio-blind."""
    parsing_loss_mult: float = 0.05
    """Weight of the parsing (semantic) cross-entropy loss."""
    enable_collider: bool = True
    """Clip rays to [near_plane, far_plane]."""


class AENeRFModel(Model):
    """See the module docstring."""

    config: AENeRFModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        metadata = self.kwargs.get("metadata") or {}
        window, feature_dim = metadata.get("audio_feature_shape", (16, 80))
        self.num_classes = len(LABEL_NAMES)
        self.audio_encoder: AudioEncoder | None = None
        if self.config.audio_code_dim > 0:
            self.audio_encoder = AudioEncoder(window, feature_dim, self.config.audio_code_dim)
        self.field = AudioConditionedField(
            self.scene_box.aabb,
            num_semantic_classes=self.num_classes - 1,  # background is what the ray does not hit
            audio_code_dim=self.config.audio_code_dim,
            hidden_dim=self.config.hidden_dim,
            num_layers=self.config.num_layers,
            num_frequencies=self.config.num_frequencies,
        )
        default_audio = metadata.get("default_audio")
        if default_audio is None:
            default_audio = torch.zeros(window * feature_dim)
        self.register_buffer("default_audio", default_audio.float().clone())
        plate = metadata.get("background_image")
        plate = plate.float() / 255.0 if plate is not None else torch.zeros(1, 1, 3)
        self.register_buffer("background_plate", plate)
        self.register_buffer("label_colors", torch.tensor(LABEL_COLORS, dtype=torch.float32) / 255.0)
        self.register_buffer("region_ids", torch.tensor(AUDIO_REGION_LABELS))

        self.sampler_uniform = UniformSampler(num_samples=self.config.num_coarse_samples)
        self.sampler_pdf = PDFSampler(num_samples=self.config.num_importance_samples)
        self.renderer_rgb = RGBRenderer(background_color="black")
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="expected")
        if self.config.enable_collider:
            self.collider = NearFarCollider(near_plane=self.config.near_plane, far_plane=self.config.far_plane)

    def get_param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "fields": list(self.field.parameters())
            + (list(self.audio_encoder.parameters()) if self.audio_encoder else [])
        }

    def _audio_code(self, ray_bundle: RayBundle) -> Tensor | None:
        if self.audio_encoder is None:
            return None
        audio = (ray_bundle.metadata or {}).get("audio")
        if audio is None:  # e.g. a viewer camera: drive with the clip's average audio
            audio = self.default_audio.expand(*ray_bundle.shape, -1)
        flat = audio.reshape(-1, audio.shape[-1]).to(self.default_audio)
        return unique_rows_encode(self.audio_encoder, flat).reshape(*ray_bundle.shape, -1)

    def _query(self, ray_samples: RaySamples, code: Tensor | None) -> dict[str, Tensor]:
        positions = ray_samples.frustums.get_positions()
        directions = ray_samples.frustums.directions
        sample_code = None
        if code is not None:
            sample_code = code[..., None, :].expand(*positions.shape[:-1], code.shape[-1])
        return self.field(positions, directions, sample_code)

    def _render(self, ray_samples: RaySamples, out: dict[str, Tensor]) -> dict[str, Tensor]:
        weights = ray_samples.get_weights(out["density"])
        rgb = self.renderer_rgb(rgb=out["rgb"], weights=weights)
        accumulation = self.renderer_accumulation(weights)
        depth = self.renderer_depth(weights=weights, ray_samples=ray_samples)
        fg_probs = torch.sum(weights * torch.softmax(out["semantics"], -1), dim=-2)
        parsing = torch.cat([(1.0 - accumulation).clamp_min(0.0), fg_probs], -1)
        return {"rgb": rgb, "accumulation": accumulation, "depth": depth, "parsing_probs": parsing, "weights": weights}

    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        code = self._audio_code(ray_bundle)
        samples_coarse = self.sampler_uniform(ray_bundle)
        coarse = self._render(samples_coarse, self._query(samples_coarse, code))
        samples_fine = self.sampler_pdf(ray_bundle, samples_coarse, coarse["weights"])
        fine = self._render(samples_fine, self._query(samples_fine, code))
        probs = fine["parsing_probs"]
        outputs = {
            "rgb": fine["rgb"],
            "accumulation": fine["accumulation"],
            "depth": fine["depth"],
            "parsing_probs": probs,
            "audio_region": probs[..., self.region_ids].sum(-1, keepdim=True),
            "rgb_coarse": coarse["rgb"],
            "accumulation_coarse": coarse["accumulation"],
            "parsing_probs_coarse": coarse["parsing_probs"],
        }
        return outputs

    def _composite(self, rgb: Tensor, accumulation: Tensor, background: Tensor) -> Tensor:
        return rgb + (1.0 - accumulation) * background

    def _batch_background(self, batch: dict[str, Tensor], like: Tensor) -> Tensor:
        if "background" not in batch:
            return torch.zeros_like(like)
        return batch["background"].to(like.device).float() / 255.0

    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        gt = batch["image"].to(self.device)[..., :3]
        pred = self._composite(outputs["rgb"], outputs["accumulation"], self._batch_background(batch, gt))
        return {"psnr": psnr(pred, gt)}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, Tensor]:
        gt = batch["image"].to(self.device)[..., :3]
        bg = self._batch_background(batch, gt)
        loss = {
            "rgb_loss_coarse": F.mse_loss(
                self._composite(outputs["rgb_coarse"], outputs["accumulation_coarse"], bg), gt
            ),
            "rgb_loss_fine": F.mse_loss(self._composite(outputs["rgb"], outputs["accumulation"], bg), gt),
        }
        if self.config.parsing_loss_mult > 0 and "parsing" in batch:
            labels = batch["parsing"].to(self.device).long().reshape(-1)
            nll = 0.0
            for key in ("parsing_probs_coarse", "parsing_probs"):
                probs = outputs[key].reshape(-1, self.num_classes)
                nll = nll + F.nll_loss(torch.log(probs.clamp_min(1e-6)), labels)
            loss["parsing_loss"] = self.config.parsing_loss_mult * nll
        return loss

    def plate_for(self, height: int, width: int) -> Float[Tensor, "height width 3"]:
        """The background plate resized to an image size."""
        plate = self.background_plate
        if plate.shape[:2] != (height, width):
            plate = F.interpolate(
                plate.permute(2, 0, 1)[None], size=(height, width), mode="bilinear", align_corners=False
            )
            plate = plate[0].permute(1, 2, 0)
        return plate

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box: OrientedBox | None = None) -> dict[str, Tensor]:
        outputs = super().get_outputs_for_camera(camera, obb_box=obb_box)
        h, w = outputs["rgb"].shape[:2]
        plate = self.plate_for(h, w).to(outputs["rgb"].device)
        outputs["rgb_foreground"] = outputs["rgb"]
        outputs["rgb"] = self._composite(outputs["rgb"], outputs["accumulation"], plate)
        outputs["parsing"] = self.label_colors.to(plate.device)[outputs["parsing_probs"].argmax(-1)]
        outputs.pop("rgb_coarse", None)
        outputs.pop("accumulation_coarse", None)
        outputs.pop("parsing_probs_coarse", None)
        return outputs

    def get_image_metrics_and_images(
        self, outputs: dict[str, Tensor], batch: dict[str, Tensor]
    ) -> tuple[dict[str, float], dict[str, Tensor]]:
        gt = batch["image"].to(outputs["rgb"].device)[..., :3]
        pred = outputs["rgb"]
        metrics = {"psnr": float(psnr(pred, gt)), "ssim": float(ssim(pred, gt))}
        if "audio_region" in batch:
            region = batch["audio_region"].to(pred.device)[..., 0].bool()
            if region.any():
                metrics["lower_face_psnr"] = float(masked_psnr(pred, gt, region))
        if "parsing" in batch:
            labels = batch["parsing"].to(pred.device)[..., 0].long()
            metrics["parsing_accuracy"] = float((outputs["parsing_probs"].argmax(-1) == labels).float().mean())
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        images = {
            "img": torch.cat([gt, pred, (pred - gt).abs().clamp(0, 1)], dim=1),
            "parsing": outputs["parsing"],
            "depth": depth,
        }
        return metrics, images
