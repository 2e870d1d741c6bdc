"""Proposal sampling: small audio-free density fields decide where along a ray the model's fields are evaluated.

The talking-head models' default two-pass sampling evaluates the (expensive) fields twice per ray: on uniform
samples, then again on those plus PDF samples drawn from the first pass's weights. With proposal sampling
(Mip-NeRF 360, as nerfstudio's nerfacto does it) one or more cheap hash-grid density fields take the place
of the coarse pass: each proposal level resamples the ray from the previous level's weights, and the model's
own fields run once, on the final samples only. The proposal fields see positions only, never audio or
reference features; trained over every frame, their density covers wherever the mouth moves.

They learn from the interlevel loss (their weights must bound the final pass's weight histogram, which is
detached), optionally with the distortion loss on the final weights. Training needs two callbacks: the weight
annealing (early on the proposals' weights are flattened so that samples spread over the whole ray) and the
step counter that schedules how often the proposals are updated with gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.configs.base_config import InstantiateConfig
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation
from nerfstudio.fields.density_fields import HashMLPDensityField
from nerfstudio.model_components.losses import distortion_loss, interlevel_loss
from nerfstudio.model_components.ray_samplers import PDFSampler, ProposalNetworkSampler, UniformSampler
from torch import Tensor, nn

from aenerf_ns.fields.audio_field import hash_grid_implementation
from aenerf_ns.fields.grid_density_field import GridDensityField


@dataclass
class ProposalSamplingConfig(InstantiateConfig):
    """Proposal density fields and their sampler (used when the model's `ray_sampling` is "proposal")."""

    _target: type = field(default_factory=lambda: ProposalSampling)
    num_proposal_samples: tuple[int, ...] = (64,)
    """Samples per ray at each proposal level (one proposal density field per level)."""
    num_field_samples: int = 24
    """Samples per ray at which the model's own fields are evaluated (once per ray)."""
    density_field: Literal["hashgrid", "grid"] = "hashgrid"
    """Proposal density fields: hash grid + small MLP (nerfacto's), or dense multi-resolution voxel grids
    (`grid_density_field`; far cheaper on a CPU)."""
    grid_resolutions: tuple[int, ...] = (32, 64, 128)
    """Resolutions of the dense grids of each proposal level (grid density fields only)."""
    hidden_dim: int = 16
    """Width of each proposal field's MLP."""
    num_layers: int = 2
    """Hidden layers of each proposal field's MLP."""
    hash_levels: int = 5
    """Hash-grid resolution levels of each proposal field."""
    hash_log2_size: int = 17
    """log2 of each proposal hash-grid level's table size."""
    hash_max_resolution: tuple[int, ...] = (128,)
    """Finest hash-grid resolution per proposal level (the last value serves any further levels)."""
    empty_ray_threshold: float = 1e-3
    """At inference, rays whose last proposal level puts less than this total weight on the head are left
    empty instead of being shaded by the model's fields; 0 shades every ray."""
    single_jitter: bool = False
    """Jitter all of a ray's samples by one random offset instead of one per sample."""
    update_every: int = 5
    """After the warm-up, the proposal fields get gradients only every this many steps (cheaper steps)."""
    warmup_steps: int = 5000
    """Steps over which the gradient-update interval grows from every step to `update_every`."""
    anneal_slope: float = 10.0
    """Slope of the proposal-weight annealing (Mip-NeRF 360, eq. 18)."""
    anneal_steps: int = 1000
    """Steps over which the proposal weights are annealed from flat to as predicted."""
    interlevel_loss_mult: float = 1.0
    """Weight of the interlevel loss that trains the proposal fields."""
    distortion_loss_mult: float = 0.002
    """Weight of the distortion loss on the final samples' weights (compact weights along each ray); 0 turns it off."""


class ProposalSampling(nn.Module):
    """Proposal density fields, the sampler that runs them, their losses and their training callbacks."""

    config: ProposalSamplingConfig

    def __init__(self, config: ProposalSamplingConfig, aabb: Float[Tensor, "2 3"]) -> None:
        super().__init__()
        self.config = config
        levels = len(config.num_proposal_samples)
        if levels < 1 or min(config.num_proposal_samples) < 1 or config.num_field_samples < 1:
            raise ValueError(
                "proposal sampling needs at least one proposal level and positive sample counts, got "
                f"num_proposal_samples={config.num_proposal_samples}, num_field_samples={config.num_field_samples}"
            )
        if not config.hash_max_resolution:
            raise ValueError("hash_max_resolution needs at least one value (the finest resolution per level)")
        if config.density_field not in ("hashgrid", "grid"):
            raise ValueError(f"unknown proposal density_field {config.density_field!r}: use 'hashgrid' or 'grid'")
        implementation = hash_grid_implementation()
        self.density_fields = nn.ModuleList(
            GridDensityField(aabb, config.grid_resolutions)
            if config.density_field == "grid"
            else HashMLPDensityField(
                aabb.clone().float(),
                num_layers=config.num_layers,
                hidden_dim=config.hidden_dim,
                num_levels=config.hash_levels,
                max_res=config.hash_max_resolution[min(level, len(config.hash_max_resolution) - 1)],
                log2_hashmap_size=config.hash_log2_size,
                implementation=implementation,
            )
            for level in range(levels)
        )
        self.sampler = ProposalNetworkSampler(
            num_proposal_samples_per_ray=tuple(config.num_proposal_samples),
            num_nerf_samples_per_ray=config.num_field_samples,
            num_proposal_network_iterations=levels,
            single_jitter=config.single_jitter,
            update_sched=self._update_interval,
            initial_sampler=UniformSampler(single_jitter=config.single_jitter),  # near/far bound the head
            pdf_sampler=PDFSampler(include_original=False, single_jitter=config.single_jitter),
        )

    def _update_interval(self, step: int) -> float:
        """Steps between gradient updates of the proposal fields: 1 at first, `update_every` after warm-up."""
        cfg = self.config
        return float(np.clip(np.interp(step, [0, cfg.warmup_steps], [0, cfg.update_every]), 1, cfg.update_every))

    def forward(self, ray_bundle: RayBundle) -> tuple[RaySamples, list[Tensor], list[RaySamples]]:
        """The final samples for the model's fields, and each proposal level's weights and samples."""
        density_fns = [f.density_fn for f in self.density_fields]
        return self.sampler(ray_bundle, density_fns=density_fns)

    @staticmethod
    def surface_distance(weights: Float[Tensor, "R S 1"], ray_samples: RaySamples) -> Float[Tensor, "R 1"]:
        """Expected distance along each ray under a proposal level's weights (detached): where the ray meets
        the head. Rays the level finds (nearly) empty get the middle of their sampled interval."""
        mids = ((ray_samples.frustums.starts + ray_samples.frustums.ends) / 2.0).detach()
        weights = weights.detach()
        total = weights.sum(1)
        expected = (weights * mids).sum(1) / total.clamp_min(1e-6)
        middle = (ray_samples.frustums.starts[:, 0] + ray_samples.frustums.ends[:, -1]).detach() / 2.0
        return torch.where(total > 1e-3, expected, middle)

    def rays_to_shade(self, weights: Float[Tensor, "R S 1"]) -> Tensor | None:
        """Which rays the fields must shade (bool (R,)) given the last proposal level's weights; None for all.
        At least one ray is kept, so a pass never runs on nothing."""
        threshold = self.config.empty_ray_threshold
        if threshold <= 0:
            return None
        hit = weights.detach().sum((1, 2)) >= threshold
        if bool(hit.all()):
            return None
        hit[0] = True
        return hit

    def losses(
        self, weights_list: list[Float[Tensor, "R S 1"]], ray_samples_list: list[RaySamples]
    ) -> dict[str, Tensor]:
        """Interlevel (and distortion) losses, means over the rays; the lists end with the final pass's weights
        and samples."""
        cfg = self.config
        loss = {"interlevel_loss": cfg.interlevel_loss_mult * interlevel_loss(weights_list, ray_samples_list)}
        if cfg.distortion_loss_mult > 0:
            loss["distortion_loss"] = cfg.distortion_loss_mult * distortion_loss(weights_list, ray_samples_list)
        return loss

    def anneal(self, step: int) -> None:
        """Set the weight annealing for this step: exponent 0 (flat weights) at step 0, 1 after `anneal_steps`."""
        cfg = self.config
        fraction = float(np.clip(step / max(cfg.anneal_steps, 1), 0.0, 1.0))
        slope = cfg.anneal_slope
        self.sampler.set_anneal(slope * fraction / ((slope - 1.0) * fraction + 1.0))

    def training_callbacks(self) -> list[TrainingCallback]:
        """Annealing before each training step, the sampler's step counter after it."""
        return [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self.anneal),
            TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self.sampler.step_cb),
        ]
