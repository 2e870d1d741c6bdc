"""The two engines under AE-NeRF's method, as model-config overrides: the presets' fast engine and the paper's.

Both run every component of the paper; they differ in where and how often the networks are evaluated
(docs/aenerf.md, *The engine*). The method presets take `fast_engine`; `aenerf-bench`'s `aenerf-paper` row
applies `paper_engine` to a preset.
"""

from __future__ import annotations

from aenerf_ns.aenerf.aenerf_model import AENeRFModelConfig
from aenerf_ns.model_components.proposal_sampling import ProposalSamplingConfig

TINY_PAPER_FIELDS = {"hidden_dim": 64, "num_layers": 3}
"""The CPU preset's MLP size under the paper's engine (a positional encoding needs the extra layer)."""


def fast_engine(tiny: bool) -> dict:
    """The presets' engine under the paper's method: proposal density grids place a few samples per ray,
    tri-plane fields with a short MLP shade them, and the reference scheme runs once per ray at the surface point
    (docs/aenerf.md). The audio field still runs on every ray at inference: skipping it outside the audio region
    saved a sixth of a render but cost the lower face 5 dB where it was measured.
    `AENeRFModelConfig()` itself keeps the paper's engine (two passes, per-sample f~, positional MLPs)."""
    if tiny:
        proposal = ProposalSamplingConfig(
            density_field="grid", grid_resolutions=(64, 128), num_proposal_samples=(32,), num_field_samples=12
        )
        fields = dict(triplane_resolutions=(64, 128, 256), triplane_features=4, hidden_dim=64, num_layers=2)
    else:
        proposal = ProposalSamplingConfig(
            density_field="grid", grid_resolutions=(64, 128, 256), num_proposal_samples=(64,), num_field_samples=24
        )
        fields = dict(triplane_resolutions=(64, 128, 256, 512), triplane_features=8, hidden_dim=128, num_layers=3)
    return dict(
        ray_sampling="proposal",
        proposal=proposal,
        position_encoding="triplane",
        reference_points="surface",
        **fields,
    )


def paper_engine(tiny: bool) -> dict:
    """Overrides that give a preset back the paper's engine: two passes of the fields, the reference scheme
    at every sample, positional-encoding MLPs (`aenerf-bench`'s `aenerf-paper`)."""
    paper = AENeRFModelConfig()
    size = TINY_PAPER_FIELDS if tiny else {"hidden_dim": paper.hidden_dim, "num_layers": paper.num_layers}
    return dict(
        ray_sampling=paper.ray_sampling,
        position_encoding=paper.position_encoding,
        reference_points=paper.reference_points,
        audio_field_skip_threshold=paper.audio_field_skip_threshold,
        hidden_dim=size["hidden_dim"],
        num_layers=size["num_layers"],
    )
