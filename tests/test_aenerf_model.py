"""AE-NeRF as a whole: every ablation trains, rays reach the fields their region group names, F_ai never
sees audio, and a base model's weights start a fine-tune on a new identity."""

from pathlib import Path

import pytest
import torch

from aenerf_ns.aenerf.aenerf_model import IDENTITY_BUFFERS
from aenerf_ns.aenerf.audio_aware_aggregation import AudioAwareAggregation, AudioBlindAggregation
from aenerf_ns.aenerf.ray_groups import AUDIO_ONLY, OTHER_ONLY, OVERLAP

ABLATIONS = {
    "full": {},
    "without_aaa": {"use_aaa": False},
    "without_dual_fields": {"use_dual_fields": False},
    "without_warper": {"use_warper": False},
    "without_aaa_and_audio": {"use_aaa": False, "use_audio": False},
    "without_references": {"use_references": False},
    "hashgrid": {"position_encoding": "hashgrid"},
    "density_mask_blend": {"sample_blend": "density-mask"},
    "masked_fields_blend": {"sample_blend": "masked-fields"},
}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_every_variant_trains_a_step(sample_dataset, make_pipeline, name):
    pipeline = make_pipeline(sample_dataset, **ABLATIONS[name])
    model = pipeline.model
    flags = model.config
    _, losses, metrics = pipeline.get_train_loss_dict(0)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith("field_aa.") for n in grads)
    assert (model.field_ai is not None) == flags.use_dual_fields
    assert ("mask_loss" in losses) and ("offset_loss" in losses) == (flags.use_references and flags.use_warper)
    if flags.use_references:
        assert any(n.startswith("reference_encoder.") for n in grads), "reference CNN must learn"
        assert (model.warper is not None) == flags.use_warper
        expected = AudioAwareAggregation if flags.use_aaa else AudioBlindAggregation
        assert isinstance(model.aggregator, expected)
    assert (model.audio_encoder is not None) == flags.use_audio
    if flags.use_audio:
        assert any(n.startswith("audio_encoder.") for n in grads)
    # the sampler's groups reach the model: about 40% of each region's rays are overlap
    assert 0.25 < float(metrics["rays_overlap_fraction"]) < 0.55


def test_sample_blend_setting_reaches_the_overlap_rays(sample_dataset, make_pipeline):
    pipeline = make_pipeline(sample_dataset)
    model = pipeline.model.eval()
    ray_bundle, _ = pipeline.datamanager.next_train(0)
    rendered = {}
    for blend in ("mask", "density-mask", "masked-fields"):
        model.config.sample_blend = blend
        with torch.no_grad():
            rendered[blend] = model(ray_bundle)
    for blend in ("density-mask", "masked-fields"):  # every ray is an overlap ray at inference
        assert (rendered[blend]["rgb"] - rendered["mask"]["rgb"]).abs().max() > 1e-4, blend
    # only "masked-fields" changes the geometry: the others add both fields' densities alike
    torch.testing.assert_close(rendered["density-mask"]["accumulation"], rendered["mask"]["accumulation"])
    assert (rendered["masked-fields"]["accumulation"] - rendered["mask"]["accumulation"]).abs().max() > 1e-4


def test_audio_aaa_needs_audio(sample_dataset, make_pipeline):
    with pytest.raises(ValueError, match="use_aaa needs audio"):
        make_pipeline(sample_dataset, use_audio=False)


def _count_rows(module: torch.nn.Module, counter: list) -> None:
    """Points per call of a field (positions are (..., 3): flat or (rays, samples, 3))."""
    module.register_forward_hook(lambda m, args, out: counter.append(args[0].shape[:-1].numel()))


def test_rays_go_through_the_fields_of_their_group(sample_dataset, make_pipeline, small_model):
    pipeline = make_pipeline(sample_dataset, rays=200, ray_sampling="two-pass", reference_points="per-sample")
    model = pipeline.model
    ray_bundle, batch = pipeline.datamanager.next_train(0)
    groups = ray_bundle.metadata["ray_group"][:, 0]
    assert torch.equal(groups, batch["ray_group"])
    region = batch["audio_region"][:, 0]
    assert region[groups == AUDIO_ONLY].all() and not region[groups == OTHER_ONLY].any()
    rows_aa, rows_ai = [], []
    _count_rows(model.field_aa, rows_aa)
    _count_rows(model.field_ai, rows_ai)
    model(ray_bundle)
    n_aa, n_ai = int((groups != OTHER_ONLY).sum()), int((groups != AUDIO_ONLY).sum())
    assert len(rows_aa) == len(rows_ai) == 2  # coarse and fine pass
    assert rows_aa[0] == n_aa * small_model["num_coarse_samples"]
    assert rows_ai[0] == n_ai * small_model["num_coarse_samples"]
    assert rows_aa[1] % n_aa == 0 and rows_aa[1] // n_aa == rows_ai[1] // n_ai > small_model["num_importance_samples"]
    # at inference every ray is an overlap ray and goes through both fields
    model.eval()
    rows_aa.clear(), rows_ai.clear()
    outputs = model(ray_bundle)
    assert (outputs["ray_group"] == OVERLAP).all()
    assert rows_aa == rows_ai and rows_aa[0] == len(groups) * small_model["num_coarse_samples"]


def test_audio_independent_field_output_is_invariant_to_audio(sample_dataset, make_pipeline):
    pipeline = make_pipeline(sample_dataset)
    model = pipeline.model.eval()
    ray_bundle, _ = pipeline.datamanager.next_train(0)
    captured = {"aa": [], "ai": []}
    model.field_aa.register_forward_hook(lambda m, a, out: captured["aa"].append(out["rgb"].detach().clone()))
    model.field_ai.register_forward_hook(lambda m, a, out: captured["ai"].append(out["rgb"].detach().clone()))
    results = []
    for row in (3, 30):
        ray_bundle.metadata["audio_index"] = torch.full_like(ray_bundle.metadata["audio_index"], row)
        captured["aa"].clear(), captured["ai"].clear()
        with torch.no_grad():
            model(ray_bundle)
        results.append({k: v[0] for k, v in captured.items()})  # the coarse pass: same sample positions
    assert torch.equal(results[0]["ai"], results[1]["ai"])
    assert (results[0]["aa"] - results[1]["aa"]).abs().max() > 1e-6


def _save_checkpoint(pipeline, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 0, "pipeline": pipeline.state_dict()}, path)
    return path


def test_fine_tune_starts_from_the_base_weights_with_its_own_references(tmp_path, sample_dataset, make_pipeline):
    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample

    write_synthetic_sample(tmp_path / "base", identities=2, seconds=1.2, resolution=48)
    base = make_pipeline(tmp_path / "base")
    assert base.model.reference_images.shape[0] == 2
    pipeline_step = base.get_train_loss_dict(0)[1]
    sum(pipeline_step.values()).backward()
    ckpt = _save_checkpoint(base, tmp_path / "runs" / "nerfstudio_models" / "step-000000001.ckpt")

    tuned = make_pipeline(sample_dataset, load_base=ckpt.parent)
    for name, value in base.model.state_dict().items():
        if name.split(".")[0] in IDENTITY_BUFFERS:
            continue
        assert torch.equal(tuned.model.state_dict()[name], value), name
    assert tuned.model.reference_images.shape[0] == 1  # the new identity's references, not the base's
    scratch = make_pipeline(sample_dataset)
    assert not torch.equal(scratch.model.reference_images, base.model.reference_images[:1])
    assert torch.equal(tuned.model.reference_images, scratch.model.reference_images)

    with pytest.raises(ValueError, match="does not match this model's settings"):
        make_pipeline(sample_dataset, load_base=ckpt, hidden_dim=16)
    with pytest.raises(FileNotFoundError):
        make_pipeline(sample_dataset, load_base=tmp_path / "missing.ckpt")


def test_model_picks_num_references_of_its_own(sample_dataset, make_pipeline):
    """The references are the model's choice (`--pipeline.model.num-references`), not the dataparser's."""
    from aenerf_ns.aenerf.reference_frames import pick_reference_frames
    from aenerf_ns.data.talking_head_metadata import talking_head_metadata

    pipeline = make_pipeline(sample_dataset, num_references=3)
    model = pipeline.model
    assert model.reference_images.shape == (1, 3, 48, 48, 3)
    refs = pick_reference_frames(talking_head_metadata(pipeline.datamanager.train_dataset.metadata), 3)
    assert torch.equal(model.reference_images, refs.images)
    assert torch.equal(model.reference_camera_to_worlds, refs.camera_to_worlds)
    assert model.reference_audio.shape[:3] == (1, 3, 2 * model._radius() + 1)


def test_method_presets_parse_their_sampler_and_model_options():
    """ns-train narrows the data manager's pixel sampler to each preset's own, so its options parse and apply."""
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    from aenerf_ns.aenerf.region_sampler import RegionPixelSamplerConfig
    from aenerf_ns.ssp_nerf.semantic_sampler import SemanticPixelSamplerConfig

    args = ["--pipeline.datamanager.pixel-sampler.overlap-fraction", "0.2", "--pipeline.model.num-references", "3"]
    aenerf = tyro.cli(AnnotatedBaseConfigUnion, args=["aenerf-tiny", *args])
    sampler = aenerf.pipeline.datamanager.pixel_sampler
    assert isinstance(sampler, RegionPixelSamplerConfig) and sampler.overlap_fraction == 0.2
    assert aenerf.pipeline.model.num_references == 3
    semantic_aware = ["--pipeline.datamanager.pixel-sampler.semantic-aware", "False"]
    ssp = tyro.cli(AnnotatedBaseConfigUnion, args=["ssp-nerf-tiny", *semantic_aware])
    sampler = ssp.pipeline.datamanager.pixel_sampler
    assert isinstance(sampler, SemanticPixelSamplerConfig) and not sampler.semantic_aware


def test_cpu_presets_train_at_their_learning_rate_decaying_to_a_tenth():
    """The registered CPU presets, through nerfstudio's own optimizer setup: Adam starts at the presets' rate and its
    schedule ends at a tenth of it on the last step; the full-size preset keeps the paper's rate."""
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion
    from nerfstudio.engine.optimizers import Optimizers

    from aenerf_ns.method_configs.common import TINY_LEARNING_RATE

    def learning_rates(preset: str, steps: int) -> tuple[float, float]:
        """The rate nerfstudio's optimizer starts at and the one it reaches after `steps` steps."""
        config = tyro.cli(AnnotatedBaseConfigUnion, args=[preset])
        weights = torch.nn.Parameter(torch.zeros(3))
        weights.grad = torch.zeros(3)
        optimizers = Optimizers(config.optimizers, {"fields": [weights]})
        start = optimizers.optimizers["fields"].param_groups[0]["lr"]
        for step in range(min(steps, config.max_num_iterations)):
            optimizers.optimizer_step_all()
            optimizers.scheduler_step_all(step)
        return start, optimizers.optimizers["fields"].param_groups[0]["lr"]

    for preset in ("aenerf-tiny", "ssp-nerf-tiny"):
        start, end = learning_rates(preset, steps=100000)
        assert start == pytest.approx(TINY_LEARNING_RATE), preset
        assert end == pytest.approx(TINY_LEARNING_RATE / 10, rel=0.01), preset
    assert learning_rates("aenerf", steps=0)[0] == pytest.approx(5e-4)
