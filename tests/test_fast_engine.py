"""Fast-engine parts: tri-plane fast path against its explicit reference, grid proposal fields, per-ray inputs,
and AE-NeRF's reference scheme once per ray."""

from __future__ import annotations

import pytest
import torch

from aenerf_ns.field_components.triplane_encoding import TriplaneEncoding
from aenerf_ns.fields.audio_field import AudioConditionedField, attend_audio
from aenerf_ns.fields.grid_density_field import GridDensityField

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def test_triplane_fast_path_matches_reference_values_and_gradients():
    torch.manual_seed(0)
    enc = TriplaneEncoding((5, 9), features_per_plane=3, init_scale=1.0)
    points = torch.rand(200, 3)
    points[:4] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.5], [1.0, 0.0, 0.25]])
    fast = enc(points)
    ref = enc(points, reference=True)
    assert fast.shape == (200, enc.get_out_dim()) == (200, 18)
    assert torch.allclose(fast, ref, atol=1e-5)
    weights = torch.randn_like(fast)
    grads_fast = torch.autograd.grad((fast * weights).sum(), list(enc.parameters()))
    grads_ref = torch.autograd.grad((enc(points, reference=True) * weights).sum(), list(enc.parameters()))
    for a, b in zip(grads_fast, grads_ref):
        assert a.abs().sum() > 0 and torch.allclose(a, b, atol=1e-5)


def test_triplane_corner_reads_the_corner_texel():
    enc = TriplaneEncoding((4,), features_per_plane=1, init_scale=1.0)
    plane_xy = enc.planes[0][0, 0]
    value = enc(torch.tensor([[1.0, 0.0, 0.3]]))[0, 0]  # u = x = 1 (last column), v = y = 0 (first row)
    assert torch.isclose(value, plane_xy[0, -1])


def test_grid_density_field_is_zero_outside_and_learns():
    field = GridDensityField(AABB, (4, 8))
    inside = torch.zeros(10, 3)
    outside = torch.full((10, 3), 2.0)
    assert (field.density_fn(outside) == 0).all() and (field.density_fn(inside) > 0).all()
    field.density_fn(inside).sum().backward()
    assert all(g.grad is not None and g.grad.abs().sum() > 0 for g in field.grids)


@pytest.mark.parametrize("attention", [False, True], ids=["concat", "audio-attention"])
@pytest.mark.parametrize("encoding", ["positional", "triplane"])
def test_per_ray_inputs_equal_repeated_per_sample_inputs(encoding, attention):
    torch.manual_seed(0)
    field = AudioConditionedField(AABB, 4, audio_code_dim=6, condition_dim=5, hidden_dim=16, num_layers=2,
                                  encoding=encoding, triplane_resolutions=(8,), audio_attention=attention)  # fmt: skip
    if attention:
        torch.nn.init.normal_(field.audio_attention.weight)  # as after training
    pos = torch.rand(7, 3, 3) * 1.6 - 0.8
    dirs = torch.nn.functional.normalize(torch.randn(7, 3), dim=-1)
    audio, cond = torch.randn(7, 6), torch.randn(7, 5)
    per_ray = field(pos, dirs, audio, cond)
    per_sample = field(pos, dirs[:, None].expand(-1, 3, -1), audio[:, None].expand(-1, 3, -1),
                       cond[:, None].expand(-1, 3, -1))  # fmt: skip
    for key in ("density", "rgb", "semantics"):
        assert per_ray[key].shape == per_sample[key].shape
        assert torch.allclose(per_ray[key], per_sample[key], atol=1e-5), key


def test_audio_attention_starts_as_plain_conditioning_then_weighs_the_code_per_point():
    """Zero-initialised, the attention leaves the field's outputs as without it; trained, it scales each point's audio
    code by its own weights (so audio can move one place of the face and not another), and it learns from the loss."""
    torch.manual_seed(0)
    plain = AudioConditionedField(AABB, 4, audio_code_dim=6, hidden_dim=16, num_layers=2, encoding="triplane",
                                  triplane_resolutions=(8,))  # fmt: skip
    torch.manual_seed(0)
    attended = AudioConditionedField(AABB, 4, audio_code_dim=6, hidden_dim=16, num_layers=2, encoding="triplane",
                                     triplane_resolutions=(8,), audio_attention=True)  # fmt: skip
    assert plain.audio_attention is None and attended.audio_attention is not None
    pos = torch.rand(5, 4, 3) * 1.6 - 0.8
    dirs = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    audio = torch.randn(5, 6)
    a, b = plain(pos, dirs, audio), attended(pos, dirs, audio)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    b["density"].sum().backward()
    assert attended.audio_attention.weight.grad.abs().sum() > 0

    weights = torch.zeros(6, attended.position_encoding.get_out_dim())
    code = torch.ones(2, 6)
    enc = torch.zeros(2, weights.shape[1])
    enc[1, 0] = 10.0  # the second point's encoding switches the first channel's weight to ~2 (the first's stays 1)
    weights[0, 0] = 1.0
    linear = torch.nn.Linear(weights.shape[1], 6)
    with torch.no_grad():
        linear.weight.copy_(weights)
        linear.bias.zero_()
    scaled = attend_audio(code, enc, linear)
    assert (
        torch.allclose(scaled[0], torch.ones(6))
        and scaled[1, 0] > 1.99
        and torch.allclose(scaled[1, 1:], torch.ones(5))
    )
    per_ray = attend_audio(code, torch.zeros(2, 3, weights.shape[1]), linear)  # a ray's code over its 3 samples
    assert per_ray.shape == (2, 3, 6)


def test_surface_reference_points_need_proposal_sampling(sample_dataset, small_model):
    from aenerf_ns.method_configs.aenerf_methods import aenerf_tiny_config

    config = aenerf_tiny_config()
    config.pipeline.datamanager.data = sample_dataset
    for key, value in small_model.items():
        setattr(config.pipeline.model, key, value)
    config.pipeline.model.reference_points = "surface"
    config.pipeline.model.ray_sampling = "two-pass"
    with pytest.raises(ValueError, match="needs the proposal fields"):
        config.pipeline.setup(device="cpu", test_mode="val")


def test_fast_engine_trains_and_renders_with_one_reference_point_per_ray(sample_dataset, small_model):
    from aenerf_ns.method_configs.aenerf_methods import aenerf_tiny_config

    config = aenerf_tiny_config()
    config.pipeline.datamanager.data = sample_dataset
    config.pipeline.datamanager.train_num_rays_per_batch = 64
    model_cfg = config.pipeline.model
    for key, value in small_model.items():
        setattr(model_cfg, key, value)
    model_cfg.ray_sampling, model_cfg.reference_points, model_cfg.position_encoding = "proposal", "surface", "triplane"
    model_cfg.triplane_resolutions = (16,)
    model_cfg.audio_field_skip_threshold = 0.05
    model_cfg.proposal.density_field, model_cfg.proposal.grid_resolutions = "grid", (8, 16)
    model_cfg.proposal.num_proposal_samples, model_cfg.proposal.num_field_samples = (12,), 4
    torch.manual_seed(0)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    model = pipeline.model
    points: list[int] = []
    model.warper.register_forward_hook(lambda m, args, out: points.append(args[0].shape[0]))
    outputs, losses, _ = pipeline.get_train_loss_dict(0)
    sum(losses.values()).backward()
    assert points == [64]  # the warper (the reference scheme) ran once per ray, not per sample
    assert "offset_loss" in losses and "interlevel_loss" in losses
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.field_aa.position_encoding.parameters())
    model.eval()
    camera = pipeline.datamanager.eval_dataset.cameras[0:1]
    rendered = model.get_outputs_for_camera(camera)
    assert rendered["rgb"].shape == (int(camera.height), int(camera.width), 3)
    assert torch.isfinite(rendered["rgb"]).all() and torch.isfinite(rendered["depth"]).all()
    assert torch.allclose(rendered["parsing_probs"].sum(-1), torch.ones(1), atol=1e-4)


def test_presets_run_the_fast_engine_and_the_paper_row_runs_two_passes(sample_dataset):
    """`aenerf-tiny` shades one pass at the proposal's samples with one reference point per ray; the benchmark's
    `aenerf-paper` (the paper's engine) runs the reference scheme at every coarse and fine sample."""
    from aenerf_ns.bench.bench_methods import BY_NAME

    warped_points, configs = {}, {}
    for name in ("aenerf", "aenerf-paper"):
        config = configs[name] = BY_NAME[name].build(sample_dataset, True, 0.5, 32)
        torch.manual_seed(0)
        pipeline = config.pipeline.setup(device="cpu", test_mode="val")
        counts: list[int] = []
        pipeline.model.warper.register_forward_hook(lambda m, args, out, c=counts: c.append(args[0].shape[:-1].numel()))
        outputs, losses, _ = pipeline.get_train_loss_dict(0)
        warped_points[name] = counts
        assert ("rgb_loss_coarse" in losses) == (name == "aenerf-paper"), sorted(losses)
        assert ("interlevel_loss" in losses) == (name == "aenerf")
    assert sum(warped_points["aenerf"]) == 32  # once per ray
    cfg = configs["aenerf-paper"].pipeline.model
    per_ray_paper = cfg.num_coarse_samples + (cfg.num_coarse_samples + cfg.num_importance_samples)
    assert sum(warped_points["aenerf-paper"]) >= 32 * per_ray_paper  # every coarse and fine sample


def test_network_evaluations_count_each_networks_points_per_frame(sample_dataset):
    """The benchmark's per-frame counts: the fast engine's warper runs once per pixel, its fields at most at the
    proposal's samples, the proposal grids at every proposal sample; the paper's engine runs the warper per sample."""
    from aenerf_ns.bench.bench_methods import BY_NAME
    from aenerf_ns.bench.network_evaluations import FRAME_PIXELS, network_evaluations

    counts = {}
    for name in ("aenerf", "aenerf-paper"):
        config = BY_NAME[name].build(sample_dataset, True, 0.5, 32)
        torch.manual_seed(0)
        pipeline = config.pipeline.setup(device="cpu", test_mode="val")
        camera = pipeline.datamanager.eval_dataset.cameras[0:1]
        camera.rescale_output_resolution(0.25)
        counts[name] = (network_evaluations(pipeline.model, camera), config.pipeline.model)
    fast, fast_cfg = counts["aenerf"]
    paper, paper_cfg = counts["aenerf-paper"]
    assert fast["measured_pixels"] == 12 * 12
    per_pixel = fast["points_per_pixel"]
    assert per_pixel["warper"] == pytest.approx(1.0)
    assert per_pixel["proposal_sampling"] == pytest.approx(fast_cfg.proposal.num_proposal_samples[0])
    assert 0 < per_pixel["field_ai"] <= fast_cfg.proposal.num_field_samples
    assert 0 <= per_pixel.get("field_aa", 0.0) <= fast_cfg.proposal.num_field_samples
    assert fast["points"]["warper"] == pytest.approx(FRAME_PIXELS)
    paper_samples = 2 * paper_cfg.num_coarse_samples + paper_cfg.num_importance_samples
    assert paper["points_per_pixel"]["warper"] >= paper_samples
    assert paper["points_per_pixel"]["field_aa"] >= paper_samples and "proposal_sampling" not in paper["points"]
    assert paper["total_linear_gflop"] > 5 * fast["total_linear_gflop"] > 0
