"""AE-NeRF for nerfstudio: reference features aggregated by audio, and two fields blended by their masks.

Per sample point the model
1. projects the point into the identity's reference frames, corrects the projection with the audio-aware
   warper and reads the reference CNN features there (`reference_views`, `warper`);
2. fuses the references' features with Audio Aware Aggregation, weighting references whose audio is
   close to the target's (`audio_aware_aggregation`), giving f~;
3. evaluates the audio-associated field F_aa(x, d, a, f~) and/or the audio-independent field
   F_ai(x, d, f~) depending on the ray's region group, and blends them by their predicted masks on
   overlap rays (`region_sampler`, `mask_blend`).

Audio enters as an index into the clip's audio-feature table; the code of a frame is the encoded feature
window of that frame smoothed over its neighbours (`audio_smoothing`). Rendering composites the
foreground over the identity's static background plate. Every paper component has a switch for the
ablations. Choices the paper leaves open are listed in docs/aenerf.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.field_components.encodings import NeRFEncoding
from torch import Tensor

from aenerf_ns.aenerf.audio_aware_aggregation import AudioAwareAggregation, AudioBlindAggregation
from aenerf_ns.aenerf.mask_blend import blend_dual_samples
from aenerf_ns.aenerf.reference_views import (
    ReferenceEncoder,
    project_points,
    sample_reference_features,
    view_directions,
)
from aenerf_ns.aenerf.region_sampler import AUDIO_ONLY, OTHER_ONLY, OVERLAP
from aenerf_ns.aenerf.warper import Warper, offset_length_loss
from aenerf_ns.audio.audio_smoothing import neighbour_rows
from aenerf_ns.models.audio_field import AudioConditionedField
from aenerf_ns.models.talking_head_model import TalkingHeadModel, TalkingHeadModelConfig

IDENTITY_BUFFERS = (
    "reference_images",
    "reference_camera_to_worlds",
    "reference_intrinsics",
    "reference_audio",
    "background_plates",
    "default_audio",
)
"""Buffers that describe one dataset's people, not learned weights: never copied from a base model."""


@dataclass
class AENeRFModelConfig(TalkingHeadModelConfig):
    """AE-NeRF model settings."""

    _target: type = field(default_factory=lambda: AENeRFModel)
    reference_feature_dim: int = 64
    """Channels of the reference CNN's feature maps (RGB included)."""
    aggregation_dim: int = 128
    """Token width of the aggregation's cross-attention (the paper's 128)."""
    aggregation_heads: int = 4
    """Attention heads in each cross-attention block."""
    condition_dim: int = 64
    """Size of the aggregated reference feature f~ given to the fields."""
    warper_hidden_dim: int = 128
    """Width of the warper's hidden layers."""
    use_aaa: bool = True
    """Audio Aware Aggregation; False uses audio-blind attention pooling (the "w/o AAA" ablation)."""
    use_dual_fields: bool = True
    """Separate audio-associated and audio-independent fields; False renders the whole image with one audio field."""
    use_warper: bool = True
    """Correct reference projections with the audio-aware warper."""
    use_references: bool = True
    """Condition the fields on reference-frame features at all; False gives a plain audio NeRF."""
    mask_loss_mult: float = 1e-3
    """Weight of the region-mask loss (rendered mask vs the region's ground truth)."""
    offset_loss_mult: float = 5e-8
    """Weight of the warper's offset-length loss."""
    load_base: Path | None = None
    """Base-model checkpoint (.ckpt, or a run's nerfstudio_models folder) whose weights start this model."""


class AENeRFModel(TalkingHeadModel):
    """See the module docstring."""

    config: AENeRFModelConfig

    # ------------------------------------------------------------------ construction
    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        if not cfg.use_audio and cfg.use_aaa and cfg.use_references:
            raise ValueError("use_aaa needs audio: set use_aaa False for an audio-blind model")
        metadata = self.kwargs.get("metadata") or {}
        window, feature_dim = metadata.get("audio_feature_shape", (16, 80))
        audio_dim = self.audio_dim
        table, first, last = self.audio_table, self.audio_first, self.audio_last
        radius = self._radius()

        # references of every identity (persistent: the model is tied to the frames it was trained with)
        refs = metadata.get("references")
        height, width = metadata.get("image_size", (8, 8))
        num_refs = 4
        if refs is not None:
            num_ids, num_refs = refs["images"].shape[:2]
            ref_audio = table[neighbour_rows(refs["audio_index"].reshape(-1), radius, first, last)]
            self.register_buffer("reference_images", refs["images"].clone())
            self.register_buffer("reference_camera_to_worlds", refs["camera_to_worlds"].float().clone())
            self.register_buffer("reference_intrinsics", refs["intrinsics"].float().clone())
            self.register_buffer("reference_audio", ref_audio.reshape(num_ids, num_refs, 2 * radius + 1, -1).float())
        else:
            self.register_buffer("reference_images", torch.zeros(1, num_refs, height, width, 3, dtype=torch.uint8))
            self.register_buffer("reference_camera_to_worlds", torch.eye(4)[:3].expand(1, num_refs, 3, 4).clone())
            self.register_buffer("reference_intrinsics", torch.ones(1, num_refs, 4))
            self.register_buffer("reference_audio", torch.zeros(1, num_refs, 2 * radius + 1, window * feature_dim))
        self._feature_cache: dict[int, Tensor] = {}

        cond_dim = cfg.condition_dim if cfg.use_references else 0
        if cfg.use_references:
            self.reference_encoder = ReferenceEncoder(cfg.reference_feature_dim, hidden_dim=cfg.reference_feature_dim)
            self.warp_position_encoding = NeRFEncoding(
                in_dim=3, num_frequencies=4, min_freq_exp=0.0, max_freq_exp=3.0, include_input=True
            )
            self.warper = (
                Warper(self.warp_position_encoding.get_out_dim(), audio_dim, cfg.warper_hidden_dim)
                if cfg.use_warper
                else None
            )
            self.aggregator_ai = None
            if cfg.use_dual_fields and audio_dim:
                self.aggregator_ai = AudioBlindAggregation(
                    cfg.reference_feature_dim, cond_dim, cfg.aggregation_dim, cfg.aggregation_heads
                )
            if cfg.use_aaa:
                self.aggregator = AudioAwareAggregation(
                    audio_dim, cfg.reference_feature_dim, cond_dim, cfg.aggregation_dim, cfg.aggregation_heads
                )
            else:
                self.aggregator = AudioBlindAggregation(
                    cfg.reference_feature_dim, cond_dim, cfg.aggregation_dim, cfg.aggregation_heads
                )

        self.field_aa = self.make_field(audio_dim, cond_dim)
        self.field_ai = self.make_field(0, cond_dim) if cfg.use_dual_fields else None

        if cfg.load_base is not None:
            self.load_base_weights(cfg.load_base)

    def load_base_weights(self, path: Path) -> None:
        """Start from a base model's learned weights, keeping this dataset's references, plates and audio."""
        path = Path(path)
        if path.is_dir():
            ckpts = sorted(path.glob("step-*.ckpt"))
            if not ckpts:
                raise FileNotFoundError(f"no step-*.ckpt checkpoint in {path}")
            path = ckpts[-1]
        if not path.is_file():
            raise FileNotFoundError(f"base checkpoint {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=False)
        pipeline_state = state.get("pipeline", state)
        prefix = "_model."
        weights = {
            k[len(prefix) :]: v
            for k, v in pipeline_state.items()
            if k.startswith(prefix) and k[len(prefix) :].split(".")[0] not in IDENTITY_BUFFERS
        }
        own = self.state_dict()
        mismatched = [k for k, v in weights.items() if k in own and own[k].shape != v.shape]
        missing = [k for k in own if k.split(".")[0] not in IDENTITY_BUFFERS and k not in weights]
        if mismatched or missing or not weights:
            detail = ", ".join((mismatched + missing)[:5])
            raise ValueError(
                f"{path} does not match this model's settings ({detail or 'no model weights in it'}): fine-tune "
                "with the same method and model options the base model was trained with"
            )
        self.load_state_dict(weights, strict=False)

    def train(self, mode: bool = True):
        self._feature_cache = {}  # reference features change once training resumes
        return super().train(mode)

    # ------------------------------------------------------------------ references
    def reference_audio_codes(self) -> Float[Tensor, "I L code"] | None:
        """Smoothed audio codes of every identity's reference frames."""
        if self.audio_encoder is None:
            return None
        ids, refs, k, flat = self.reference_audio.shape
        return self._encode_windows(self.reference_audio.reshape(ids * refs, k, flat)).reshape(ids, refs, -1)

    def _reference_features(self, identity: int) -> Float[Tensor, "L C H W"]:
        if not self.training and identity in self._feature_cache:
            return self._feature_cache[identity]
        images = self.reference_images[identity].float() / 255.0
        feats = self.reference_encoder(images)
        if not self.training:
            self._feature_cache[identity] = feats
        return feats

    def _reference_condition(
        self,
        positions: Float[Tensor, "P 3"],
        directions: Float[Tensor, "P 3"],
        codes: Float[Tensor, "P code"] | None,
        ref_codes: Float[Tensor, "I L code"] | None,
        identities: Tensor,
    ) -> tuple[Float[Tensor, "P cond"], Float[Tensor, "P cond"], Tensor]:
        """Reference conditions per point: f~ for F_aa, the audio-free one for F_ai, and warper offsets.

        f~ depends on the target audio (through the warper and the aggregation), so F_ai gets its own
        condition built without audio: features at the plain projections, pooled by audio-blind attention.
        Where f~ is audio-free already (no audio), both fields share it.
        """
        cond = positions.new_zeros(positions.shape[0], self.config.condition_dim)
        cond_ai = cond.clone() if self.aggregator_ai is not None else None
        offsets = []
        for identity in torch.unique(identities).tolist():
            sel = identities == identity
            pts = positions[sel]
            c2w = self.reference_camera_to_worlds[identity]
            feature_maps = self._reference_features(identity)
            pixels, _ = project_points(pts, c2w, self.reference_intrinsics[identity])
            pts_codes = codes[sel] if codes is not None else None
            pts_ref_codes = ref_codes[identity] if ref_codes is not None else None  # (L, code), shared
            plain = sample_reference_features(feature_maps, pixels)
            feats = plain
            if self.warper is not None:
                lo, hi = self.scene_box.aabb.to(pts.device)
                enc = self.warp_position_encoding((pts - lo) / (hi - lo) * 2.0 - 1.0)
                offset = self.warper(enc, pts_codes, pts_ref_codes, directions[sel], view_directions(pts, c2w))
                offsets.append(offset)
                feats = sample_reference_features(feature_maps, pixels + offset)
            cond[sel] = self.aggregator(pts_codes, pts_ref_codes, feats)[0]
            if cond_ai is not None:
                cond_ai[sel] = self.aggregator_ai(None, None, plain)[0]
        offsets_all = torch.cat(offsets) if offsets else positions.new_zeros(0, 1, 2)
        return cond, (cond_ai if cond_ai is not None else cond), offsets_all

    # ------------------------------------------------------------------ rendering
    def _field_samples(self, fld: AudioConditionedField, pos, dirs, codes, cond) -> dict[str, Tensor]:
        out = fld(pos, dirs, codes if fld.audio_code_dim else None, cond)
        probs = torch.softmax(out["semantics"], -1)
        return {"density": out["density"], "rgb": out["rgb"], "probs": probs}

    def _render(
        self,
        ray_samples: RaySamples,
        codes: Tensor | None,
        ref_codes: Tensor | None,
        identities: Tensor,
        groups: Tensor,
    ) -> dict[str, Tensor]:
        positions = ray_samples.frustums.get_positions()
        num_rays, num_samples = positions.shape[:2]
        directions = ray_samples.frustums.directions
        pos_flat = positions.reshape(-1, 3)
        dir_flat = directions.reshape(-1, 3)
        sample_ids = identities[:, None].expand(-1, num_samples).reshape(-1)
        sample_codes = None
        if codes is not None:
            sample_codes = codes[:, None].expand(-1, num_samples, -1).reshape(num_rays * num_samples, -1)
        cond = cond_ai = None
        offsets = positions.new_zeros(0, 1, 2)
        if self.config.use_references:
            cond, cond_ai, offsets = self._reference_condition(pos_flat, dir_flat, sample_codes, ref_codes, sample_ids)

        def run(fld: AudioConditionedField, rays: Tensor, cond: Tensor | None) -> dict[str, Tensor]:
            """Evaluate a field on the samples of the selected rays and scatter back (zeros elsewhere)."""
            sel = rays[:, None].expand(-1, num_samples).reshape(-1)
            out = self._field_samples(
                fld,
                pos_flat[sel],
                dir_flat[sel],
                sample_codes[sel] if sample_codes is not None else None,
                cond[sel] if cond is not None else None,
            )
            full = {}
            for key, value in out.items():
                buf = value.new_zeros(num_rays * num_samples, value.shape[-1])
                buf[sel] = value
                full[key] = buf.reshape(num_rays, num_samples, -1)
            return full

        if self.field_ai is None:
            single = run(self.field_aa, torch.ones(num_rays, dtype=torch.bool, device=positions.device), cond)
            mask_aa = single["probs"][..., self.region_ids - 1].sum(-1, keepdim=True)
            samples = dict(single, mask_aa=mask_aa, mask_ai=1.0 - mask_aa)
        else:
            aa = run(self.field_aa, groups != OTHER_ONLY, cond)
            ai = run(self.field_ai, groups != AUDIO_ONLY, cond_ai)
            mask_aa = aa["probs"][..., self.region_ids - 1].sum(-1, keepdim=True)
            mask_ai = ai["probs"][..., self.other_ids - 1].sum(-1, keepdim=True)
            samples = blend_dual_samples(aa, ai, mask_aa, mask_ai, groups)

        weights = ray_samples.get_weights(samples["density"])
        accumulation = self.renderer_accumulation(weights)
        fg_probs = torch.sum(weights * samples["probs"], dim=-2)
        return {
            "rgb": torch.sum(weights * samples["rgb"], dim=-2),
            "accumulation": accumulation,
            "depth": self.renderer_depth(weights=weights, ray_samples=ray_samples),
            "parsing_probs": torch.cat([(1.0 - accumulation).clamp_min(0.0), fg_probs], -1),
            "mask_aa": torch.sum(weights * samples["mask_aa"], dim=-2),
            "mask_ai": torch.sum(weights * samples["mask_ai"], dim=-2),
            "weights": weights,
            "offsets": offsets,
        }

    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        shape = ray_bundle.shape
        if len(shape) != 1:
            ray_bundle = ray_bundle.flatten()
        metadata = ray_bundle.metadata or {}
        n = ray_bundle.origins.shape[0]
        device = ray_bundle.origins.device
        identities = torch.zeros(n, dtype=torch.long, device=device)
        if "identity" in metadata:
            identities = metadata["identity"].reshape(-1).round().long().clamp(0, self.reference_images.shape[0] - 1)
        groups = torch.full((n,), OVERLAP, dtype=torch.long, device=device)
        if "ray_group" in metadata and self.training:
            groups = metadata["ray_group"].reshape(-1).long()
        codes = self.audio_codes(ray_bundle)
        ref_codes = self.reference_audio_codes() if self.config.use_references else None  # once for both passes
        coarse, fine, outputs = self.render_two_pass(
            ray_bundle, lambda samples: self._render(samples, codes, ref_codes, identities, groups)
        )
        outputs.update(
            mask_aa=fine["mask_aa"],
            mask_ai=fine["mask_ai"],
            mask_aa_coarse=coarse["mask_aa"],
            mask_ai_coarse=coarse["mask_ai"],
            ray_group=groups[:, None],
        )
        if self.training:
            outputs["offsets"] = torch.cat([coarse["offsets"], fine["offsets"]])
        if len(shape) != 1:
            outputs = {k: v.reshape(*shape, *v.shape[1:]) for k, v in outputs.items() if k != "offsets"}
        return outputs

    # ------------------------------------------------------------------ losses and metrics
    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        metrics = super().get_metrics_dict(outputs, batch)
        groups = outputs["ray_group"][..., 0]
        for name, group in (("aa", AUDIO_ONLY), ("ai", OTHER_ONLY), ("overlap", OVERLAP)):
            metrics[f"rays_{name}_fraction"] = (groups == group).float().mean()
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, Tensor]:
        loss = self.photometric_losses(outputs, batch)
        if "parsing" in batch:
            labels = batch["parsing"].to(self.device).long().reshape(-1)
            if self.config.parsing_loss_mult > 0:
                loss["parsing_loss"] = self._parsing_loss(outputs, labels)
            if self.config.mask_loss_mult > 0:
                in_region = torch.isin(labels, self.region_ids).float()[:, None]
                other = ((labels > 0).float()[:, None]) * (1.0 - in_region)
                groups = outputs["ray_group"].reshape(-1)
                uses_aa = (groups != OTHER_ONLY).float()[:, None]
                uses_ai = (groups != AUDIO_ONLY).float()[:, None] if self.field_ai is not None else None
                mask = 0.0
                for suffix in ("_coarse", ""):
                    mask = mask + _masked_mse(outputs["mask_aa" + suffix].reshape(-1, 1), in_region, uses_aa)
                    if uses_ai is not None:
                        mask = mask + _masked_mse(outputs["mask_ai" + suffix].reshape(-1, 1), other, uses_ai)
                loss["mask_loss"] = self.config.mask_loss_mult * mask
        if self.config.offset_loss_mult > 0 and "offsets" in outputs and outputs["offsets"].numel():
            loss["offset_loss"] = self.config.offset_loss_mult * offset_length_loss(outputs["offsets"])
        return loss

    def get_image_metrics_and_images(
        self, outputs: dict[str, Tensor], batch: dict[str, Tensor]
    ) -> tuple[dict[str, float], dict[str, Tensor]]:
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        images["masks"] = torch.cat([outputs["mask_aa"], outputs["mask_ai"]], dim=1).expand(-1, -1, 3)
        return metrics, images


def _masked_mse(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Mean squared error over the rays with weight 1 (zero when there are none)."""
    return (((pred - target) ** 2) * weight).sum() / weight.sum().clamp_min(1.0)
