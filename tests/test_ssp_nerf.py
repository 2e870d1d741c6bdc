"""SSP-NeRF: the semantic-aware sampler follows the loss, the torso deformation learns, and the method benchmark
compares it with its ablations (training, rendering and evaluating like every method: test_method_contract)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SSP_SMALL

from aenerf_ns.data.parsing_labels import LABEL_NAMES, MOUTH_INTERIOR, TORSO
from aenerf_ns.ssp_nerf.semantic_sampler import SemanticPixelSampler, SemanticPixelSamplerConfig, allocate

VENV_BIN = Path(sys.executable).parent


def _labels() -> torch.Tensor:
    """Two 40x40 label maps: mostly background and torso, a small mouth (16 pixels per image)."""
    labels = torch.zeros(2, 40, 40, dtype=torch.uint8)
    labels[:, 25:, :] = TORSO
    labels[:, 5:25, 10:30] = 3
    labels[:, 18:22, 15:25] = 4
    labels[:, 19:21, 16:24] = MOUTH_INTERIOR
    labels[:, 0:5, 10:30] = 2
    return labels


def _fractions(sampler: SemanticPixelSampler, labels: torch.Tensor, rays: int = 4000) -> torch.Tensor:
    _, classes = sampler.sample_classes(labels, rays)
    return torch.bincount(classes, minlength=len(LABEL_NAMES)).float() / rays


def test_sampler_shifts_rays_to_the_class_whose_loss_grows():
    sampler = SemanticPixelSampler(SemanticPixelSamplerConfig(floor=0.04, momentum=0.5, uniform_fraction=0.0))
    sampler.generator = torch.Generator().manual_seed(0)
    labels = _labels()
    area = torch.bincount(labels.reshape(-1).long(), minlength=len(LABEL_NAMES)).float() / labels.numel()
    before = _fractions(sampler, labels)
    assert before[MOUTH_INTERIOR] == pytest.approx(1 / 6, abs=0.01), "equal shares before any loss is known"
    assert before[MOUTH_INTERIOR] > 10 * area[MOUTH_INTERIOR]

    # Every class has loss 0.01 except the mouth, whose loss is made 20 times larger, step after step.
    for _ in range(5):
        losses = torch.full((len(LABEL_NAMES),), 0.01)
        losses[MOUTH_INTERIOR] = 0.2
        sampler.update(losses * 100, torch.full((len(LABEL_NAMES),), 100.0))
    after = _fractions(sampler, labels)
    assert after[MOUTH_INTERIOR] > 0.6 and after[MOUTH_INTERIOR] > 3 * before[MOUTH_INTERIOR]
    others = [k for k in range(len(LABEL_NAMES)) if k != MOUTH_INTERIOR]
    assert all(after[k] >= 0.04 - 0.01 for k in others), "the floor keeps every class sampled"
    assert torch.allclose(sampler.shares().sum(), torch.tensor(1.0))

    # The mouth gets better: its share falls back.
    for _ in range(10):
        sampler.update(torch.full((len(LABEL_NAMES),), 1.0), torch.full((len(LABEL_NAMES),), 100.0))
    assert _fractions(sampler, labels)[MOUTH_INTERIOR] < 0.25


def test_uniform_ablation_follows_area_and_absent_classes_get_nothing():
    labels = _labels()
    area = torch.bincount(labels.reshape(-1).long(), minlength=len(LABEL_NAMES)).float() / labels.numel()
    uniform = SemanticPixelSampler(SemanticPixelSamplerConfig(semantic_aware=False))
    uniform.generator = torch.Generator().manual_seed(1)
    assert torch.allclose(_fractions(uniform, labels, 20000), area, atol=0.015)

    # The default keeps half of every batch uniform: shares mix pixel area and the loss-driven split.
    mixed = SemanticPixelSampler(SemanticPixelSamplerConfig())
    mixed.generator = torch.Generator().manual_seed(2)
    measured = _fractions(mixed, labels, 20000)
    expected = 0.5 * area + 0.5 / len(LABEL_NAMES)
    assert torch.allclose(measured, expected, atol=0.015) and torch.allclose(mixed.shares(), expected, atol=1e-6)

    no_mouth = labels.clone()
    no_mouth[no_mouth == MOUTH_INTERIOR] = 4
    sampler = SemanticPixelSampler(SemanticPixelSamplerConfig())
    assert _fractions(sampler, no_mouth)[MOUTH_INTERIOR] == 0
    assert allocate(torch.tensor([0.5, 0.3, 0.2]), 7).tolist() == [4, 2, 1]


def _pipeline(data: Path, **model):
    from aenerf_ns.method_configs.ssp_nerf_methods import ssp_nerf_tiny_config

    config = ssp_nerf_tiny_config()
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.train_num_rays_per_batch = 128
    for key, value in {**SSP_SMALL, **model}.items():
        setattr(config.pipeline.model, key, value)
    torch.manual_seed(0)
    return config.pipeline.setup(device="cpu", test_mode="val")


def test_torso_deformation_receives_gradients_and_leaves_the_head_alone(sample_dataset):
    pipeline = _pipeline(sample_dataset)
    model = pipeline.model
    assert model.torso is not None
    _, losses, metrics = pipeline.get_train_loss_dict(0)
    assert "torso_offset_loss" in losses and "parsing_loss" in losses
    sum(losses.values()).backward()
    last = model.torso.net[-1]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0, "torso module gets no gradient"

    # After a step the deformation is live: torso points move with the pose, head points never do.
    with torch.no_grad():
        last.weight.normal_(0, 0.5)
        points = torch.tensor([[0.0, 0.2, 0.5], [0.0, -0.4, 0.6], [0.3, -2.0, 0.2], [-0.8, -1.9, 0.0]])
        pose = torch.zeros(4, 12)
        pose[:, 3] = 0.2
        offsets = model.torso(points, pose, model.torso.frame_latents(None, 4))
    assert offsets[:2].abs().max() < 1e-3 and offsets[2:].norm(dim=-1).min() > 1e-3
    # The sampler's allocation reaches the logged metrics.
    assert {f"sampler_{n}_share" for n in LABEL_NAMES} <= set(metrics)
    assert {f"rays_{n}_fraction" for n in LABEL_NAMES} <= set(metrics)


def test_without_torso_deformation_there_is_no_torso_module(sample_dataset):
    pipeline = _pipeline(sample_dataset, use_torso_deformation=False)
    assert pipeline.model.torso is None
    _, losses, _ = pipeline.get_train_loss_dict(0)
    assert "torso_offset_loss" not in losses and torch.isfinite(sum(losses.values()))


def test_model_feeds_its_per_class_loss_to_the_sampler(sample_dataset):
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes

    pipeline = _pipeline(sample_dataset)
    sampler = pipeline.datamanager.train_pixel_sampler
    assert isinstance(sampler, SemanticPixelSampler)
    (callback,) = pipeline.model.get_training_callbacks(TrainingCallbackAttributes(None, None, pipeline, None))
    pipeline.get_train_loss_dict(0)
    callback.run_callback_at_location(0, callback.where_to_run[0])
    assert sampler.updates == 1 and not torch.allclose(sampler.class_loss, torch.ones(len(LABEL_NAMES)))
    assert "%" in pipeline.model.viewer_allocation.value


@pytest.mark.slow
def test_method_bench_compares_ssp_nerf_with_its_ablations_and_aenerf(tmp_path):
    cmd = [
        str(VENV_BIN / "aenerf-method-bench"),
        "--output",
        str(tmp_path),
        "--skip",
        "audio",
        "fewshot",
        "fields",
        "ablation",
    ]
    cmd += ["--ssp-steps", "2", "--resolution", "32", "--seconds", "3", "--eval-frames", "2", "--base-identities", "0"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())["ssp"]
    assert set(results) == {"ssp-nerf", "ssp/uniform-rays", "ssp/no-torso-def", "aenerf"}
    for figures in results.values():
        assert isinstance(figures["torso_mse"], float) and isinstance(figures["lower_face_psnr"], float)
    assert "torso" in run.stdout and "mouth" in run.stdout


def test_unbiased_weights_restore_pixel_area():
    """With `unbiased`, rays carry weights that make each class count by its pixel share again."""
    labels = _labels()
    area = torch.bincount(labels.reshape(-1).long(), minlength=len(LABEL_NAMES)).float() / labels.numel()
    sampler = SemanticPixelSampler(SemanticPixelSamplerConfig(unbiased=True, momentum=0.0))
    sampler.generator = torch.Generator().manual_seed(3)
    losses = torch.full((len(LABEL_NAMES),), 0.01)
    losses[MOUTH_INTERIOR] = 1.0
    sampler.update(losses, torch.ones(len(LABEL_NAMES)))
    batch = {
        "image": torch.rand(2, 40, 40, 3),
        "image_idx": torch.tensor([7, 9]),
        "parsing": labels[..., None],
    }
    collated = sampler.collate_image_dataset_batch(batch, 20000)
    classes = collated["parsing"][:, 0].long()
    weights = collated["ray_weight"][:, 0]
    assert (classes == MOUTH_INTERIOR).float().mean() > 0.3, "the mouth is oversampled"
    weighted = torch.zeros(len(LABEL_NAMES)).index_add_(0, classes, weights) / weights.sum()
    assert torch.allclose(weighted, area, atol=0.01)
    assert set(collated["indices"][:, 0].tolist()) == {7, 9}


def test_batch_without_label_map_raises_a_clear_key_error():
    sampler = SemanticPixelSamplerConfig(num_rays_per_batch=64).setup()
    batch = {"image": torch.rand(1, 8, 8, 3), "image_idx": torch.tensor([0])}
    with pytest.raises(KeyError, match="semantic sampler needs a per-pixel 'parsing' map"):
        sampler.sample(batch)
