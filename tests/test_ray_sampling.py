"""Ray sampling: with proposal sampling every method that trains on rays (the registry's `trains_on_rays`)
evaluates its fields once per ray, at the configured number of samples, trains its proposal fields through the
interlevel loss and renders whole cameras; two-pass sampling (the default) keeps its coarse and fine passes."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from conftest import SSP_SMALL
from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation

from aenerf_ns.models.method_contract import talking_head_method, talking_head_methods

PROPOSAL_SAMPLES = 16
FIELD_SAMPLES = 5


RAY_METHODS = [m.name for m in talking_head_methods() if m.trains_on_rays]
"""The installed methods that train on rays (render through fields along them, with either ray sampling)."""
CALLBACKS = {"aenerf": 2, "ssp-nerf": 3}
"""Training callbacks with proposal sampling: annealing and step counter (+ SSP-NeRF's sampler's update)."""


def _pipeline(method: str, data: Path, model: dict, ray_sampling: str):
    """A seeded CPU pipeline of `method`'s CPU preset with `model` settings and small proposal fields."""
    from nerfstudio.configs.method_configs import all_methods

    config = copy.deepcopy(all_methods[talking_head_method(method).tiny])
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.train_num_rays_per_batch = 96
    for key, value in model.items():
        setattr(config.pipeline.model, key, value)
    config.pipeline.model.ray_sampling = ray_sampling
    if ray_sampling == "two-pass" and method == "aenerf":
        config.pipeline.model.reference_points = "per-sample"  # the preset's "surface" needs proposal fields
    proposal = config.pipeline.model.proposal
    proposal.num_proposal_samples = (PROPOSAL_SAMPLES,)
    proposal.num_field_samples = FIELD_SAMPLES
    proposal.hash_levels, proposal.hash_log2_size, proposal.hash_max_resolution = 4, 10, (32,)
    torch.manual_seed(0)
    return config.pipeline.setup(device="cpu", test_mode="val")


def _model_settings(method: str, small_model: dict) -> dict:
    """AE-NeRF's small sizes for aenerf, the ray-based models' common ones (`SSP_SMALL`) for every other method."""
    return small_model if method == "aenerf" else SSP_SMALL


def _fields(model) -> list[torch.nn.Module]:
    """The model's own fields (not the proposal fields)."""
    return [model.field_aa, model.field_ai] if hasattr(model, "field_aa") else [model.field]


def _rays_per_field(model, outputs: dict) -> list[int]:
    """How many of a training batch's rays each of the model's fields renders (AE-NeRF: by region group)."""
    if not hasattr(model, "field_aa"):
        return [outputs["rgb"].shape[0]]
    from aenerf_ns.aenerf.ray_groups import AUDIO_ONLY, OTHER_ONLY

    groups = outputs["ray_group"][:, 0]
    return [int((groups != OTHER_ONLY).sum()), int((groups != AUDIO_ONLY).sum())]


calls: list[torch.nn.Module] = []
"""The field of each entry of `_count_points`' counts, in call order."""


def _count_points(fields: list[torch.nn.Module]) -> list[int]:
    """Points passed to each field call (positions are (..., 3), flat or per ray), recorded by forward hooks."""
    counts: list[int] = []

    def record(module, args, out) -> None:
        counts.append(args[0].shape[:-1].numel())
        calls.append(module)

    for fld in fields:
        fld.register_forward_hook(record)
    return counts


@pytest.mark.parametrize("method", RAY_METHODS)
def test_proposal_sampling_trains_with_one_field_pass(sample_dataset, small_model, method):
    pipeline = _pipeline(method, sample_dataset, _model_settings(method, small_model), "proposal")
    model = pipeline.model
    attributes = TrainingCallbackAttributes(None, None, pipeline, None)
    callbacks = model.get_training_callbacks(attributes)
    assert len(callbacks) == CALLBACKS.get(method, len(callbacks)) >= 2  # proposal annealing and step counter
    counts = _count_points(_fields(model))
    for step in range(2):
        for callback in callbacks:
            callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        model.zero_grad()
        counts.clear(), calls.clear()
        outputs, losses, _ = pipeline.get_train_loss_dict(step)
        total = sum(losses.values())
        assert torch.isfinite(total) and all(torch.isfinite(v) for v in losses.values()), losses
        assert {"interlevel_loss", "distortion_loss", "rgb_loss_fine", "parsing_loss"} <= set(losses)
        assert "rgb_loss_coarse" not in losses
        if method == "aenerf":
            assert "mask_loss" in losses and "offset_loss" in losses
        total.backward()
        for callback in callbacks:
            callback.run_callback_at_location(step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
        # one pass: each field is called once, on FIELD_SAMPLES points of each of its rays
        # (F_ai runs before F_aa, which may skip rays at inference: compare in the fields' own order)
        per_field = [[c for f, c in zip(calls, counts) if f is fld] for fld in _fields(model)]
        assert per_field == [[FIELD_SAMPLES * n] for n in _rays_per_field(model, outputs)], per_field
    grads = [p.grad for p in model.proposal_sampling.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads), "the proposal fields get no gradient"
    assert model.proposal_sampling.sampler._anneal > 0  # annealing moved on from flat weights


@pytest.mark.parametrize("method", RAY_METHODS)
def test_proposal_sampling_renders_a_camera_with_the_configured_samples(sample_dataset, small_model, method):
    pipeline = _pipeline(method, sample_dataset, _model_settings(method, small_model), "proposal")
    model = pipeline.model.eval()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    fields = _fields(model)
    counts = _count_points(fields)
    outputs = model.get_outputs_for_camera(camera)
    h, w = int(camera.height), int(camera.width)
    assert outputs["rgb"].shape == (h, w, 3) and torch.isfinite(outputs["rgb"]).all()
    assert not any(k.endswith("_coarse") or k in ("weights_list", "ray_samples_list") for k in outputs)
    # at inference every ray goes through every field, once, at exactly the configured samples
    per_field = [sum(counts[k :: len(fields)]) for k in range(len(fields))]
    assert per_field == [h * w * FIELD_SAMPLES] * len(fields), (per_field, h * w)


def test_two_pass_default_keeps_coarse_and_fine_passes(sample_dataset, small_model):
    from aenerf_ns.aenerf.aenerf_model import AENeRFModelConfig

    assert AENeRFModelConfig().ray_sampling == "two-pass"
    pipeline = _pipeline("aenerf", sample_dataset, small_model, "two-pass")
    model = pipeline.model
    assert model.proposal_sampling is None
    assert not any(n.startswith("proposal") for n, _ in model.named_parameters())
    assert model.get_training_callbacks(TrainingCallbackAttributes(None, None, pipeline, None)) == []
    counts = _count_points([model.field_aa])
    outputs, losses, _ = pipeline.get_train_loss_dict(0)
    assert {"rgb_loss_coarse", "rgb_loss_fine"} <= set(losses) and "interlevel_loss" not in losses
    assert {"rgb_coarse", "mask_aa_coarse", "parsing_probs_coarse"} <= set(outputs)
    rays_aa = _rays_per_field(model, outputs)[0]
    coarse, fine = counts  # the coarse pass, then the fine pass on coarse + importance samples
    assert coarse == rays_aa * small_model["num_coarse_samples"]
    assert fine % rays_aa == 0
    assert fine // rays_aa >= small_model["num_coarse_samples"] + small_model["num_importance_samples"]


def test_unknown_ray_sampling_is_refused(sample_dataset, small_model):
    with pytest.raises(ValueError, match="unknown ray_sampling 'fast'"):
        _pipeline("aenerf", sample_dataset, small_model, "fast")
