"""AE-NeRF for nerfstudio: reference features aggregated by audio, and two fields blended by their masks.

Per sample point the model
1. projects the point into the identity's reference frames (`num_references` training frames spread over
   the audio, picked when the model is built: `reference_frames`), corrects the projection with the
   audio-aware warper and reads the reference CNN features there (`reference_views`, `warper`);
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
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.field_components.encodings import NeRFEncoding
from torch import Tensor

from aenerf_ns.aenerf.audio_aware_aggregation import AudioAwareAggregation, AudioBlindAggregation
from aenerf_ns.aenerf.mask_blend import blend_dual_samples
from aenerf_ns.aenerf.ray_groups import AUDIO_ONLY, OTHER_ONLY, OVERLAP
from aenerf_ns.aenerf.reference_frames import pick_reference_frames
from aenerf_ns.aenerf.reference_views import (
    ReferenceEncoder,
    project_points,
    sample_reference_features,
    view_directions,
)
from aenerf_ns.aenerf.warper import Warper, offset_length_loss
from aenerf_ns.audio.audio_smoothing import neighbour_rows
from aenerf_ns.data.talking_head_metadata import talking_head_metadata
from aenerf_ns.fields.audio_field import AudioConditionedField
from aenerf_ns.models.talking_head_model import (
    TalkingHeadModel,
    TalkingHeadModelConfig,
    repeat_per_sample,
    select_rays,
)
from aenerf_ns.utils.safe_checkpoint import load_checkpoint

IDENTITY_BUFFERS = (
    "reference_images",
    "reference_camera_to_worlds",
    "reference_intrinsics",
    "reference_audio",
    "background_plates",
    "default_audio",
    "opening_gain",
)
"""Buffers that describe one dataset's people, not learned weights: never copied from a base model (the opening
gain is measured on the fine-tuned identity's own frames when its training ends)."""


@dataclass
class AENeRFModelConfig(TalkingHeadModelConfig):
    """AE-NeRF model settings."""

    _target: type = field(default_factory=lambda: AENeRFModel)
    num_references: int = 4
    """Reference frames per identity (the paper's L), picked from the training part of the video by their audio."""
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
    reference_points: Literal["per-sample", "surface"] = "per-sample"
    """Where the reference scheme (projection, warper, aggregation) runs: at every sample, as in the paper, or
    once per ray at the surface point the proposal fields predict, its f~ shared by the ray's samples (needs
    `ray_sampling proposal`)."""
    audio_field_skip_threshold: float = 0.0
    """At inference, rays on which the audio-independent field renders less than this share of audio region
    skip the audio field: F_ai alone renders them, as the region sampler trains most such rays; 0 runs both
    fields on every ray."""
    mask_loss_mult: float = 1e-3
    """Weight of the region-mask loss (rendered mask vs the region's ground truth)."""
    sample_blend: Literal["mask", "density-mask", "masked-fields"] = "mask"
    """How overlap rays mix the two fields per sample: densities add and colours mix by the masks (the paper's
    Eq. 7); colours by mask times each field's own density ("density-mask"); or densities too by the masks, so
    each field's matter exists only in its own region ("masked-fields", `mask_blend.py`)."""
    offset_loss_mult: float = 5e-8
    """Weight of the warper's offset-length loss."""
    load_base: Path | None = None
    """Base-model checkpoint (.ckpt, or a run's nerfstudio_models folder) whose weights start this model."""


class AENeRFModel(TalkingHeadModel):
    """See the module docstring."""

    config: AENeRFModelConfig
    per_sample_outputs = ("offsets",)

    # ------------------------------------------------------------------ construction
    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        if not cfg.use_audio and cfg.use_aaa and cfg.use_references:
            raise ValueError("use_aaa needs audio: set use_aaa False for an audio-blind model")
        if cfg.reference_points not in ("per-sample", "surface"):
            raise ValueError(f"unknown reference_points {cfg.reference_points!r}: use 'per-sample' or 'surface'")
        if cfg.reference_points == "surface" and cfg.ray_sampling != "proposal":
            raise ValueError(
                "reference_points 'surface' needs the proposal fields' surface estimate: set ray_sampling "
                "'proposal', or reference_points 'per-sample'"
            )
        self._register_references()
        self._feature_cache: dict[int, Tensor] = {}
        self._build_reference_path()
        cond_dim = cfg.condition_dim if cfg.use_references else 0
        self.field_aa = self.make_field(self.audio_dim, cond_dim)
        self.field_ai = self.make_field(0, cond_dim) if cfg.use_dual_fields else None
        if cfg.load_base is not None:
            self.load_base_weights(cfg.load_base)

    def _register_references(self) -> None:
        """Every identity's reference frames, their poses and audio windows, as persistent buffers: the model
        is tied to the frames it was trained with."""
        refs = pick_reference_frames(talking_head_metadata(self.kwargs.get("metadata")), self.config.num_references)
        num_ids, num_refs = refs.audio_rows.shape
        radius = self._radius()
        ref_audio = self.audio_table[
            neighbour_rows(refs.audio_rows.reshape(-1), radius, self.audio_first, self.audio_last)
        ]
        self.register_buffer("reference_images", refs.images)
        self.register_buffer("reference_camera_to_worlds", refs.camera_to_worlds)
        self.register_buffer("reference_intrinsics", refs.intrinsics)
        self.register_buffer("reference_audio", ref_audio.reshape(num_ids, num_refs, 2 * radius + 1, -1).float())
        if self.opening_predictor is not None:  # the references' true openings: they are training frames
            openings = self.mouth_row_target[refs.audio_rows.reshape(-1)].reshape(num_ids, num_refs, 1)
            self.register_buffer("reference_openings", openings, persistent=False)

    def _build_reference_path(self) -> None:
        """Reference CNN, warper and aggregations (none of them when `use_references` is off)."""
        cfg = self.config
        if not cfg.use_references:
            return
        audio_dim, cond_dim = self.audio_dim, cfg.condition_dim
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
        state = load_checkpoint(path)  # a shared base model is read as tensors and numbers only, never run
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
        codes = self._encode_windows(self.reference_audio.reshape(ids * refs, k, flat)).reshape(ids, refs, -1)
        if self.opening_predictor is not None:
            codes = torch.cat([codes, self.reference_openings], -1)
        return codes

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
    def _run_field(
        self,
        fld: AudioConditionedField,
        rays: Bool[Tensor, " R"],
        positions: Float[Tensor, "R S 3"],
        directions: Float[Tensor, "R 3"],
        codes: Float[Tensor, "R code"] | None,
        cond: Float[Tensor, "R S cond"] | Float[Tensor, "R cond"] | None,
    ) -> dict[str, Tensor]:
        """A field's density, colour and parsing probabilities on the samples of the selected rays, as
        (R, S, C); zeros on the samples of the other rays."""
        every = bool(rays.all())
        if not every and not bool(rays.any()):  # no ray of this field here: its values are never used
            zeros = positions.new_zeros(*positions.shape[:2], 1)
            return {
                "density": zeros,
                "rgb": zeros.expand(-1, -1, 3),
                "probs": zeros.expand(-1, -1, self.num_classes - 1),
            }
        pick = (lambda t: t) if every else (lambda t: t[rays])
        out = fld(
            pick(positions),
            pick(directions),
            pick(codes) if codes is not None and fld.audio_code_dim else None,
            pick(cond) if cond is not None else None,
        )
        values = {"density": out["density"], "rgb": out["rgb"], "probs": torch.softmax(out["semantics"], -1)}
        if every:
            return values
        full = {}
        for key, value in values.items():
            full[key] = value.new_zeros(*positions.shape[:2], value.shape[-1])
            full[key][rays] = value
        return full

    def _shade(
        self,
        ray_samples: RaySamples,
        codes: Float[Tensor, "R code"] | None,
        cond: Tensor | None,
        cond_ai: Tensor | None,
        groups: Int[Tensor, " R"],
    ) -> dict[str, Tensor]:
        """Per-sample density, colour, parsing probabilities and region masks: the audio field alone, or each
        ray's group of fields, blended by their masks on overlap rays. Conditions are per sample (R, S, C) or
        per ray (R, C)."""
        positions = ray_samples.frustums.get_positions()
        directions = ray_samples.frustums.directions[:, 0]
        if self.field_ai is None:
            every = torch.ones_like(groups, dtype=torch.bool)
            single = self._run_field(self.field_aa, every, positions, directions, codes, cond)
            mask_aa = single["probs"][..., self.region_ids - 1].sum(-1, keepdim=True)
            return dict(single, mask_aa=mask_aa, mask_ai=1.0 - mask_aa)
        ai = self._run_field(self.field_ai, groups != AUDIO_ONLY, positions, directions, codes, cond_ai)
        mask_ai = ai["probs"][..., self.other_ids - 1].sum(-1, keepdim=True)
        if not self.training and self.config.audio_field_skip_threshold > 0:
            groups = self._skip_audio_field(ray_samples, ai, mask_ai, groups)
        aa = self._run_field(self.field_aa, groups != OTHER_ONLY, positions, directions, codes, cond)
        mask_aa = aa["probs"][..., self.region_ids - 1].sum(-1, keepdim=True)
        return blend_dual_samples(aa, ai, mask_aa, mask_ai, groups, self.config.sample_blend)

    def _skip_audio_field(
        self, ray_samples: RaySamples, ai: dict[str, Tensor], mask_ai: Float[Tensor, "R S 1"], groups: Tensor
    ) -> Int[Tensor, " R"]:
        """Overlap rays on which F_ai, rendered alone, sees (almost) no audio region become F_ai-only rays."""
        weights = ray_samples.get_weights(ai["density"])
        region_share = (weights * (1.0 - mask_ai)).sum((1, 2))
        outside = (groups == OVERLAP) & (region_share < self.config.audio_field_skip_threshold)
        return torch.where(outside, torch.full_like(groups, OTHER_ONLY), groups)

    def _conditions(
        self,
        ray_samples: RaySamples,
        surface: Float[Tensor, "R 1"] | None,
        codes: Float[Tensor, "R code"] | None,
        ref_codes: Float[Tensor, "I L code"] | None,
        identities: Int[Tensor, " R"],
    ) -> tuple[Tensor | None, Tensor | None, Tensor]:
        """The reference conditions of F_aa and F_ai and the warper's offsets: per sample (R, S, C), or per ray
        (R, C) at the surface point when `reference_points` is "surface"."""
        if not self.config.use_references:
            return None, None, ray_samples.frustums.origins.new_zeros(0, 1, 2)
        directions = ray_samples.frustums.directions[:, 0]
        if self.config.reference_points == "surface":
            assert surface is not None, "surface reference points need proposal sampling"
            points = ray_samples.frustums.origins[:, 0] + directions * surface
            return self._reference_condition(points, directions, codes, ref_codes, identities)
        positions = ray_samples.frustums.get_positions()
        r, s = positions.shape[:2]
        cond, cond_ai, offsets = self._reference_condition(
            positions.reshape(-1, 3),
            repeat_per_sample(directions, s),
            repeat_per_sample(codes, s),
            ref_codes,
            repeat_per_sample(identities, s),
        )
        return cond.reshape(r, s, -1), cond_ai.reshape(r, s, -1), offsets

    def _render(
        self,
        ray_samples: RaySamples,
        surface: Float[Tensor, "R 1"] | None,
        codes: Float[Tensor, "R code"] | None,
        ref_codes: Float[Tensor, "I L code"] | None,
        identities: Int[Tensor, " R"],
        groups: Int[Tensor, " R"],
    ) -> dict[str, Tensor]:
        """One pass: reference conditions, the fields, then volume rendering (with the region masks)."""
        cond, cond_ai, offsets = self._conditions(ray_samples, surface, codes, ref_codes, identities)
        samples = self._shade(ray_samples, codes, cond, cond_ai, groups)
        result = self.render_samples(ray_samples, samples["density"], samples["rgb"], samples["probs"])
        result["mask_aa"] = self.renderer_semantics(samples["mask_aa"], result["weights"])
        result["mask_ai"] = self.renderer_semantics(samples["mask_ai"], result["weights"])
        result["offsets"] = offsets
        return result

    def _ray_identities_and_groups(self, ray_bundle: RayBundle) -> tuple[Int[Tensor, " R"], Int[Tensor, " R"]]:
        """Each ray's identity (0 for the viewer's cameras) and field group (overlap outside training)."""
        metadata = ray_bundle.metadata or {}
        n = ray_bundle.origins.shape[0]
        device = ray_bundle.origins.device
        identities = torch.zeros(n, dtype=torch.long, device=device)
        if "identity" in metadata:
            identities = metadata["identity"].reshape(-1).round().long().clamp(0, self.reference_images.shape[0] - 1)
        groups = torch.full((n,), OVERLAP, dtype=torch.long, device=device)
        if "ray_group" in metadata and self.training:
            groups = metadata["ray_group"].reshape(-1).long()
        return identities, groups

    def render_rays(self, ray_bundle: RayBundle) -> dict[str, Tensor]:
        identities, groups = self._ray_identities_and_groups(ray_bundle)
        codes = self.ray_audio_codes(ray_bundle)
        ref_codes = self.reference_audio_codes() if self.config.use_references else None  # once for every pass
        passes, outputs = self.render_passes(
            ray_bundle,
            lambda samples, surface, rays: self._render(
                samples,
                surface,
                select_rays(codes, rays),
                ref_codes,
                select_rays(identities, rays),
                select_rays(groups, rays),
            ),
        )
        for suffix, rendered in passes.items():
            outputs["mask_aa" + suffix] = rendered["mask_aa"]
            outputs["mask_ai" + suffix] = rendered["mask_ai"]
        outputs["ray_group"] = groups[:, None]
        if self.training:
            outputs["offsets"] = torch.cat([rendered["offsets"] for rendered in passes.values()])
        return outputs

    # ------------------------------------------------------------------ losses and metrics
    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        metrics = super().get_metrics_dict(outputs, batch)
        groups = outputs["ray_group"][..., 0]
        for name, group in (("aa", AUDIO_ONLY), ("ai", OTHER_ONLY), ("overlap", OVERLAP)):
            metrics[f"rays_{name}_fraction"] = (groups == group).float().mean()
        return metrics

    def method_losses(self, outputs, batch, labels) -> dict[str, Tensor]:
        """The region-mask loss (each field's mask against the rays' regions) and the warper's offset loss."""
        loss = {}
        if labels is not None and self.config.mask_loss_mult > 0:
            in_region = torch.isin(labels, self.region_ids).float()[:, None]
            other = ((labels > 0).float()[:, None]) * (1.0 - in_region)
            groups = outputs["ray_group"].reshape(-1)
            uses_aa = (groups != OTHER_ONLY).float()[:, None]
            uses_ai = (groups != AUDIO_ONLY).float()[:, None] if self.field_ai is not None else None
            mask = 0.0
            for suffix in self.pass_suffixes(outputs):
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
