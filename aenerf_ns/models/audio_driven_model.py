"""What every audio-driven talking-head model here shares, whatever it renders with (rays or Gaussians).

- the audio path: the clip's feature table (swapped for a new track by `set_audio_track` when rendering), the
  audio code network (config `audio_code`; the module is `audio_encoder`, the name checkpoints use) and the
  smoothing of codes over neighbouring frames (`audio_codes`), the viewer's audio controls (pick, play, stream)
  and its opening camera (the first training frame's);
- the identities' static background plates, and compositing over them (`finish_camera_outputs`);
- the parsing classes (buffers of their colours and of the audio region's ids) and the parsing cross-entropy;
- the evaluation metrics (PSNR, SSIM, lower-face, torso and mouth-area PSNR/MSE, parsing accuracy) that
  `aenerf-render`, `aenerf-eval` and the benchmarks rely on for every method.

The NeRF methods build on `talking_head_model.TalkingHeadModel` (rays through fields); the Gaussian method on
this class directly.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.model_components import renderers
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from torch import Tensor

from aenerf_ns.audio.audio_code import ConvAudioCodeConfig
from aenerf_ns.audio.audio_smoothing import AudioSmoother, clip_bounds, neighbour_rows
from aenerf_ns.audio.mouth_shape_head import MouthShapeHead, standardised
from aenerf_ns.audio.opening_predictor import OpeningPredictor
from aenerf_ns.data.parsing_labels import AUDIO_REGION_LABELS, LABEL_COLORS, LABEL_NAMES, TORSO
from aenerf_ns.data.talking_head_dataset import grown_mouth
from aenerf_ns.data.talking_head_metadata import talking_head_metadata
from aenerf_ns.models.method_contract import FOREGROUND_OUTPUTS
from aenerf_ns.utils.image_metrics import masked_psnr, psnr, ssim
from aenerf_ns.viewer.viewer_audio import ViewerAudio
from aenerf_ns.viewer.viewer_camera import FaceCamera

MOUTH_MARGIN_PX = 2
"""The mouth area scored by `mouth_psnr`/`mouth_mse`: the mouth interior grown by this many pixels (the lips)."""


def mouth_area(labels: Tensor) -> Tensor:
    """Mouth interior plus a `MOUTH_MARGIN_PX` band around it (lips), as a boolean (H, W) map."""
    return grown_mouth(labels, MOUTH_MARGIN_PX)


@dataclass
class AudioDrivenModelConfig(ModelConfig):
    """Settings every talking-head model has: the audio conditioning and the parsing loss."""

    _target: type = field(default_factory=lambda: AudioDrivenModel)
    audio_code_dim: int = 64
    """Size of the audio code that conditions the model."""
    audio_code: ConvAudioCodeConfig = field(default_factory=ConvAudioCodeConfig)
    """The network that turns a frame's audio-feature window into its audio code (kept as `audio_encoder`)."""
    audio_smoothing_radius: int = 4
    """Neighbouring frames on each side mixed into a frame's audio code; 0 turns smoothing off."""
    use_audio: bool = True
    """Condition on audio at all; False makes an audio-blind model."""
    parsing_loss_mult: float = 0.05
    """Weight of the parsing cross-entropy on the rendered parsing probabilities (background = 1 - opacity)."""
    audio_table_dtype: Literal["float32", "float16"] = "float32"
    """How the per-frame audio-feature table is stored: float16 halves it (base models on many people); its rows
    are turned back into float32 before the audio code network reads them."""
    mouth_target_loss_mult: float = 0.0
    """Weight of the loss that makes each training frame's audio code predict how far its mouth is open (read
    from its parsing map, `mouth_shape_head`); 0 turns it off."""
    opening_condition: bool = False
    """Tell the fields how far the mouth is open, as one more number beside the audio code: each training frame's
    true opening in training, the opening predicted from the audio (`opening_predictor`, scaled so that on unseen
    audio it spans the training truth's range, times the gain measured on training renders after training) when
    rendering, so the rendered mouth spans the speaker's range."""

    def __setstate__(self, state: dict) -> None:
        """Configs saved before a setting existed (config.yml, pickles) get its default: settings with a
        `default_factory` (`audio_code`) have no class attribute to fall back on."""
        self.__dict__.update(state)
        for setting in fields(self):
            if setting.name not in self.__dict__ and setting.default_factory is not MISSING:
                self.__dict__[setting.name] = setting.default_factory()


class AudioDrivenModel(Model):
    """See the module docstring. Subclasses build what renders after `super().populate_modules()`."""

    config: AudioDrivenModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        meta = talking_head_metadata(self.kwargs.get("metadata"))
        window, feature_dim = meta.audio_feature_shape
        self.num_classes = len(LABEL_NAMES)
        audio_dim = cfg.audio_code_dim if cfg.use_audio else 0
        self.audio_dim = audio_dim

        # audio: feature table (non-persistent: a render swaps in its own track), encoder, smoothing
        table = self._stored_audio_table(
            meta.audio_features,
            "the audio features of " + ", ".join(str(ident.audio_path) for ident in meta.identities),
        )
        self.register_buffer("audio_table", table, persistent=False)
        first, last = clip_bounds(meta.audio_segments)
        self.register_buffer("audio_first", first, persistent=False)
        self.register_buffer("audio_last", last, persistent=False)
        self.register_buffer("default_audio", meta.default_audio.float().clone())
        self.audio_encoder = (
            cfg.audio_code.setup(window=window, feature_dim=feature_dim, code_dim=audio_dim) if audio_dim else None
        )
        self._viewer_audio = None
        self.viewer_face_camera = FaceCamera()  # the live viewer opens on the first training camera
        if audio_dim:  # live-viewer controls: which audio frame (or file) drives the render
            self._viewer_audio = ViewerAudio(self, meta.audio_feature_config, meta.fps)
            for name, element in self._viewer_audio.elements().items():
                setattr(self, name, element)
        self.audio_smoother = (
            AudioSmoother(audio_dim, cfg.audio_smoothing_radius) if audio_dim and cfg.audio_smoothing_radius else None
        )
        self.mouth_shape_head = None
        self.opening_predictor = None
        if audio_dim and (cfg.mouth_target_loss_mult > 0 or cfg.opening_condition):
            # each training frame's mouth opening, standardised per identity, at its audio row; NaN elsewhere
            target = torch.full((meta.audio_features.shape[0],), float("nan"))
            for identity in meta.identities:
                target[identity.train_audio_rows] = standardised(identity.train_mouth_opening.float())
            self.register_buffer("mouth_row_target", target, persistent=False)
        if audio_dim and cfg.mouth_target_loss_mult > 0:
            self.mouth_shape_head = MouthShapeHead(audio_dim)
        if audio_dim and cfg.opening_condition:
            self.opening_predictor = OpeningPredictor(self.audio_table.shape[1])
            known = torch.isfinite(self.mouth_row_target)
            self.opening_predictor.fit(self.audio_table[known], self.mouth_row_target[known], self.audio_table, known)
            self.register_buffer("opening_track", self._predicted_track(known), persistent=False)
            # how far predicted openings are stretched when rendering: set after training from training renders
            # (`engine.opening_calibration`), saved with the weights
            self.register_buffer("opening_gain", torch.tensor(1.0))
            self.audio_dim = audio_dim + 1  # what the fields see: the code and the opening
        self.telling_true_openings = False  # True: renders tell training frames their true opening, as training does

        plates = meta.background_images
        if plates is None:
            plates = torch.zeros(len(meta.identities), 1, 1, 3, dtype=torch.uint8)
        self.register_buffer("background_plates", plates.clone())

        self.register_buffer("label_colors", torch.tensor(LABEL_COLORS, dtype=torch.float32) / 255.0)
        self.register_buffer("region_ids", torch.tensor(AUDIO_REGION_LABELS))
        other = [c for c in range(1, self.num_classes) if c not in AUDIO_REGION_LABELS]
        self.register_buffer("other_ids", torch.tensor(other))

    # ------------------------------------------------------------------ audio
    def _stored_audio_table(self, features: Float[Tensor, "rows flat"], what: str) -> Tensor:
        """`features` as the table stores them (`audio_table_dtype`); values float16 cannot hold are refused."""
        table = features.float().clone()
        if self.config.audio_table_dtype == "float32":
            return table
        peak = float(table.abs().max()) if table.numel() else 0.0
        if not peak <= torch.finfo(torch.float16).max:
            raise ValueError(
                f"{what} reach {peak:.4g}, beyond float16's range (65504): train with "
                "--pipeline.model.audio-table-dtype float32"
            )
        return table.half()

    def set_audio_track(self, features: Float[Tensor, "T window dim"]) -> None:
        """Replace the audio-feature table (e.g. with a new speech track for rendering); one clip."""
        table = self._stored_audio_table(features.reshape(features.shape[0], -1), "the new audio track's features")
        table = table.to(self.audio_table.device)
        if table.shape[1] != self.audio_table.shape[1]:
            raise ValueError(
                f"audio features have {table.shape[1]} values per frame, the model was trained with "
                f"{self.audio_table.shape[1]}: compute them with the training run's audio settings"
            )
        self.audio_table = table
        self.audio_first, self.audio_last = clip_bounds(torch.zeros(len(table), dtype=torch.long, device=table.device))
        if self.opening_predictor is not None:
            self.opening_track = self._predicted_track(None)
            self.mouth_row_target = torch.full_like(self.opening_track, float("nan"))  # a new track has no truth

    def _predicted_track(self, seen: Tensor | None) -> Float[Tensor, " rows"]:
        """The predicted opening of every row of the audio table, scaled within each clip (`seen`: the rows the
        predictor was fitted on; None: a new track)."""
        assert self.opening_predictor is not None
        return self.opening_predictor.track(self.audio_table.float(), self.audio_first, seen)  # first row names a clip

    def row_openings(self, rows: Int[Tensor, " B"]) -> Float[Tensor, "B 1"]:
        """The opening the fields are told for table rows (`opening_condition`): the frame's true one while
        training (or `telling_true_openings`), where it is known; the one predicted from the audio, times
        `opening_gain`, otherwise."""
        told = self.opening_gain * self.opening_track[rows]
        if self.training or self.telling_true_openings:
            truth = self.mouth_row_target[rows]
            told = torch.where(torch.isfinite(truth), truth, told)
        return told[:, None]

    def _encode_windows(self, windows: Float[Tensor, "B K flat"]) -> Float[Tensor, "B code"]:
        assert self.audio_encoder is not None
        windows = windows.float()  # a float16 table's rows
        b, k, _ = windows.shape
        codes = self.audio_encoder(windows.reshape(b * k, -1)).reshape(b, k, -1)
        if self.audio_smoother is None:
            return codes[:, k // 2]
        return self.audio_smoother(codes)[0]

    def _radius(self) -> int:
        return self.audio_smoother.radius if self.audio_smoother is not None else 0

    def audio_codes(self, metadata: dict | None, count: int) -> Float[Tensor, "count code"] | None:
        """Audio codes of `count` rays or cameras from their metadata: each one's frame's table row, smoothed over
        neighbouring frames. Without an `audio_index` (a viewer camera): the frame chosen in the viewer's audio
        controls, else (no viewer, as under `ns-render`, or "clip average" chosen) the clip average. None for an
        audio-blind model."""
        if self.audio_encoder is None:
            return None
        metadata = metadata or {}
        if "audio_index" not in metadata:
            windows = self._viewer_audio.windows(self._radius()) if self._viewer_audio is not None else None
            if windows is None:
                windows = self.default_audio[None, None].expand(1, 2 * self._radius() + 1, -1)
            codes = self._encode_windows(windows)
            if self.opening_predictor is not None:
                centre = windows[:, windows.shape[1] // 2].float()
                told = self.opening_gain * self.opening_predictor.rows_from_windows(centre)
                codes = torch.cat([codes, told[:, None]], -1)
            return codes.expand(count, -1)
        rows = metadata["audio_index"].reshape(-1).round().long().clamp(0, self.audio_table.shape[0] - 1)
        uniq, inverse = torch.unique(rows, return_inverse=True)
        codes = self.row_codes(uniq)
        if self.opening_predictor is not None:
            codes = torch.cat([codes, self.row_openings(uniq)], -1)
        return codes[inverse]

    def row_codes(self, rows: Int[Tensor, " B"]) -> Float[Tensor, "B code"]:
        """Smoothed audio codes of rows of the feature table (each with its neighbours within its clip)."""
        return self._encode_windows(
            self.audio_table[neighbour_rows(rows, self._radius(), self.audio_first, self.audio_last)]
        )

    def mouth_shape_outputs(self, metadata: dict | None) -> dict[str, Tensor]:
        """In training, the predicted and true mouth openings of the training frames whose audio rows `metadata`
        names (`mouth_shape_head`), as outputs of the forward pass (a data-parallel wrapper sees only what the
        forward pass uses); nothing when the mouth target is off or outside training."""
        if self.mouth_shape_head is None or not self.training or "audio_index" not in (metadata or {}):
            return {}
        rows = torch.unique(metadata["audio_index"].reshape(-1).round().long())
        rows = rows.clamp(0, self.mouth_row_target.shape[0] - 1)
        rows = rows[torch.isfinite(self.mouth_row_target[rows])]
        return {
            "mouth_shape_pred": self.mouth_shape_head(self.row_codes(rows)),
            "mouth_shape_target": self.mouth_row_target[rows],
        }

    def mouth_target_losses(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """The mouth-shape loss of the forward pass's training frames (`mouth_shape_outputs`); none when it is off."""
        if "mouth_shape_pred" not in outputs or outputs["mouth_shape_pred"].numel() == 0:
            return {}
        error = ((outputs["mouth_shape_pred"] - outputs["mouth_shape_target"]) ** 2).mean()
        return {"mouth_target_loss": self.config.mouth_target_loss_mult * error}

    # ------------------------------------------------------------------ backgrounds and losses
    def _composite(self, rgb: Tensor, accumulation: Tensor, background: Tensor) -> Tensor:
        return rgb + (1.0 - accumulation) * background

    def _batch_background(self, batch: dict[str, Tensor], like: Tensor) -> Tensor:
        if "background" not in batch:
            return torch.zeros_like(like)
        return batch["background"].to(like.device).float() / 255.0

    def composited(self, outputs: dict[str, Tensor], batch: dict[str, Tensor], suffix: str = "") -> Tensor:
        """The rendered colour over the batch's background plate (`suffix` "_coarse" for a NeRF's coarse pass)."""
        gt = batch["image"].to(self.device)[..., :3]
        background = self._batch_background(batch, gt)
        return self._composite(outputs["rgb" + suffix], outputs["accumulation" + suffix], background)

    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        gt = batch["image"].to(self.device)[..., :3]
        return {"psnr": psnr(self.composited(outputs, batch), gt)}

    def parsing_nll(self, probs: Float[Tensor, "*batch classes"], labels: Tensor) -> Tensor:
        """Cross-entropy of rendered parsing probabilities (background included) against label ids."""
        return F.nll_loss(torch.log(probs.reshape(-1, self.num_classes).clamp_min(1e-6)), labels.reshape(-1).long())

    def plate_for(self, height: int, width: int, identity: int = 0) -> Float[Tensor, "height width 3"]:
        """The identity's background plate resized to an image size, as floats in [0, 1]."""
        plate = self.background_plates[identity].float() / 255.0
        if plate.shape[:2] != (height, width):
            plate = F.interpolate(
                plate.permute(2, 0, 1)[None], size=(height, width), mode="bilinear", align_corners=False
            )
            plate = plate[0].permute(1, 2, 0)
        return plate

    @staticmethod
    def camera_identity(camera: Cameras) -> int:
        """The identity index a camera's metadata names (0 when it names none, as a viewer camera)."""
        if camera.metadata is not None and "identity" in camera.metadata:
            return int(camera.metadata["identity"].reshape(-1)[0].round())
        return 0

    def finish_camera_outputs(self, outputs: dict[str, Tensor], camera: Cameras) -> dict[str, Tensor]:
        """A whole camera's foreground outputs composited over the identity's plate: `rgb` (composited),
        `rgb_foreground`, and `parsing` coloured by class (`method_contract.CAMERA_OUTPUTS`); training-only outputs
        removed."""
        missing = [key for key in FOREGROUND_OUTPUTS if key not in outputs]
        if missing:
            raise KeyError(f"{type(self).__name__} renders no {missing}: see method_contract.FOREGROUND_OUTPUTS")
        h, w = outputs["rgb"].shape[:2]
        identity = min(max(self.camera_identity(camera), 0), self.background_plates.shape[0] - 1)
        plate = self.plate_for(h, w, identity).to(outputs["rgb"].device)
        if renderers.BACKGROUND_COLOR_OVERRIDE is not None:  # the viewer's crop colour, blended in by the renderer
            plate = torch.zeros_like(plate)
        outputs["rgb_foreground"] = outputs["rgb"]
        outputs["rgb"] = self._composite(outputs["rgb"], outputs["accumulation"], plate)
        outputs["parsing"] = self.label_colors.to(plate.device)[outputs["parsing_probs"].argmax(-1)]
        for key in list(outputs):
            if key.endswith("_coarse") or key == "ray_group":
                outputs.pop(key)
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
                metrics["lower_face_mse"] = float(((pred - gt)[region] ** 2).mean())
        if "parsing" in batch:
            labels = batch["parsing"].to(pred.device)[..., 0].long()
            metrics["parsing_accuracy"] = float((outputs["parsing_probs"].argmax(-1) == labels).float().mean())
            for name, region in (("torso", labels == TORSO), ("mouth", mouth_area(labels))):
                if region.any():
                    metrics[f"{name}_psnr"] = float(masked_psnr(pred, gt, region))
                    metrics[f"{name}_mse"] = float(((pred - gt)[region] ** 2).mean())
        depth = colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"])
        images = {
            "img": torch.cat([gt, pred, (pred - gt).abs().clamp(0, 1)], dim=1),
            "parsing": outputs["parsing"],
            "depth": depth,
        }
        return metrics, images
