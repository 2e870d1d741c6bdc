"""Unit tests of AE-NeRF's components: reference projection, warper, aggregation, smoothing, fields, blending."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType

from aenerf_ns.aenerf.audio_aware_aggregation import AudioAwareAggregation, AudioBlindAggregation, CrossAttentionBlock
from aenerf_ns.aenerf.mask_blend import blend_dual_samples
from aenerf_ns.aenerf.ray_groups import AUDIO_ONLY, OTHER_ONLY, OVERLAP
from aenerf_ns.aenerf.reference_frames import pick_reference_frames, select_reference_frames
from aenerf_ns.aenerf.reference_views import (
    ReferenceEncoder,
    project_points,
    sample_reference_features,
    view_directions,
)
from aenerf_ns.aenerf.warper import Warper, offset_length_loss
from aenerf_ns.audio.audio_smoothing import AudioSmoother, clip_bounds, neighbour_rows
from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
from aenerf_ns.data.talking_head_metadata import talking_head_metadata
from aenerf_ns.fields.audio_field import AudioConditionedField

# ---------------------------------------------------------------------------------------------------------------
# reference views
# ---------------------------------------------------------------------------------------------------------------

WIDTH, HEIGHT, FOCAL, CX, CY = 40, 32, 50.0, 20.0, 16.0


def rotation(rx: float, ry: float, rz: float) -> torch.Tensor:
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    x = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=torch.float64)
    y = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
    z = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=torch.float64)
    return (z @ y @ x).float()


def camera_to_world(angles: tuple[float, float, float], centre: tuple[float, float, float]) -> torch.Tensor:
    return torch.cat([rotation(*angles), torch.tensor(centre)[:, None]], 1)


def make_cameras(c2w: torch.Tensor) -> Cameras:
    n = c2w.shape[0]
    return Cameras(
        camera_to_worlds=c2w,
        fx=torch.full((n, 1), FOCAL),
        fy=torch.full((n, 1), FOCAL),
        cx=torch.full((n, 1), CX),
        cy=torch.full((n, 1), CY),
        width=torch.full((n, 1), WIDTH, dtype=torch.long),
        height=torch.full((n, 1), HEIGHT, dtype=torch.long),
        camera_type=CameraType.PERSPECTIVE,
    )


C2W = torch.stack(
    [camera_to_world((0.3, -0.5, 0.2), (0.4, -0.3, 2.0)), camera_to_world((-0.2, 0.4, -0.1), (-0.5, 0.2, 1.8))]
)
INTRINSICS = torch.tensor([[FOCAL, FOCAL, CX, CY]] * 2)


def test_project_points_inverts_nerfstudio_ray_generation_over_the_full_image():
    rays = make_cameras(C2W[:1]).generate_rays(camera_indices=0, keep_shape=True)
    assert rays.origins.shape[:2] == (HEIGHT, WIDTH)
    t = torch.linspace(0.5, 3.0, HEIGHT * WIDTH).reshape(HEIGHT, WIDTH, 1)
    points = (rays.origins + t * rays.directions).reshape(-1, 3)
    pixels, depth = project_points(points, C2W[:1], INTRINSICS[:1])
    assert pixels.shape == (HEIGHT * WIDTH, 1, 2) and depth.shape == (HEIGHT * WIDTH, 1)
    y, x = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    expected = torch.stack([x + 0.5, y + 0.5], -1).reshape(-1, 2).float()
    torch.testing.assert_close(pixels[:, 0], expected, atol=1e-3, rtol=0)
    # depth is the distance along the viewing axis (-z of the camera): t times the cosine to that axis
    forward = -C2W[0, :3, 2]
    expected_depth = (t * rays.directions).reshape(-1, 3) @ forward
    assert (depth > 0).all()
    torch.testing.assert_close(depth[:, 0], expected_depth, atol=1e-4, rtol=1e-4)


def test_project_points_round_trip_through_a_second_view():
    cams = make_cameras(C2W)
    coords = torch.tensor([[0.5, 0.5], [16.5, 20.5], [3.5, 37.5], [31.5, 9.5]])  # (y, x) pixel centres
    rays = cams.generate_rays(camera_indices=0, coords=coords)
    points = rays.origins + 2.0 * rays.directions
    pixels, depth = project_points(points, C2W, INTRINSICS)
    torch.testing.assert_close(pixels[:, 0], coords.flip(-1), atol=1e-3, rtol=0)
    # the second view's ray through the projected pixel passes through the point at the returned depth
    rays1 = cams.generate_rays(camera_indices=1, coords=pixels[:, 1].flip(-1))
    cos = rays1.directions @ -C2W[1, :3, 2]
    torch.testing.assert_close(
        rays1.origins + (depth[:, 1] / cos)[:, None] * rays1.directions, points, atol=1e-4, rtol=0
    )


def test_project_points_gives_negative_depth_behind_the_camera():
    centre, forward = C2W[0, :3, 3], -C2W[0, :3, 2]
    _, depth = project_points(torch.stack([centre + forward, centre - 2 * forward]), C2W[:1], INTRINSICS[:1])
    torch.testing.assert_close(depth[:, 0], torch.tensor([1.0, -2.0]))


def test_view_directions_match_the_reference_camera_rays():
    rays = make_cameras(C2W[:1]).generate_rays(camera_indices=0, coords=torch.tensor([[2.5, 7.5], [20.5, 30.5]]))
    points = rays.origins + torch.tensor([[1.5], [0.7]]) * rays.directions
    dirs = view_directions(points, C2W)
    torch.testing.assert_close(dirs[:, 0], rays.directions, atol=1e-5, rtol=0)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(2, 2))
    to_second = points - C2W[1, :3, 3]
    torch.testing.assert_close(dirs[:, 1], to_second / to_second.norm(dim=-1, keepdim=True))


def test_sample_reference_features_reads_pixel_centres_and_interpolates_between_them():
    torch.manual_seed(0)
    maps = torch.randn(2, 3, 5, 6)  # L, C, H, W
    pixels = torch.tensor(
        [
            [[2.5, 3.5], [0.5, 0.5]],  # centres of pixel (x=2, y=3) in view 0 and (0, 0) in view 1
            [[3.0, 3.5], [5.5, 1.0]],  # halfway between x=2,3 (row 3) / halfway between y=0,1 (column 5)
            [[-3.0, 2.5], [2.5, 9.0]],  # outside the image
        ]
    )
    out = sample_reference_features(maps, pixels)
    assert out.shape == (3, 2, 3)
    torch.testing.assert_close(out[0, 0], maps[0, :, 3, 2])
    torch.testing.assert_close(out[0, 1], maps[1, :, 0, 0])
    torch.testing.assert_close(out[1, 0], (maps[0, :, 3, 2] + maps[0, :, 3, 3]) / 2)
    torch.testing.assert_close(out[1, 1], (maps[1, :, 0, 5] + maps[1, :, 1, 5]) / 2)
    torch.testing.assert_close(out[2], torch.zeros(2, 3))


def test_select_reference_frames_picks_one_frame_per_cluster():
    rng = np.random.default_rng(3)
    centres = rng.normal(scale=10.0, size=(4, 8))
    labels = rng.permutation(np.repeat(np.arange(4), 15))
    features = centres[labels] + rng.normal(scale=0.1, size=(60, 8))
    chosen = select_reference_frames(features, 4)
    assert chosen.shape == (4,)
    assert sorted(labels[chosen].tolist()) == [0, 1, 2, 3]
    np.testing.assert_array_equal(chosen, select_reference_frames(features.copy(), 4))
    # the first pick is the frame nearest the mean audio
    z = (features - features.mean(0)) / (features.std(0) + 1e-6)
    assert chosen[0] == np.argmin((z**2).sum(1))


@pytest.mark.parametrize("count", [1, 5, 12])
def test_select_reference_frames_returns_distinct_indices_even_with_repeated_rows(count):
    rng = np.random.default_rng(count)
    rows = rng.normal(size=(4, 3, 2))  # multi-dimensional features are flattened per row
    features = np.concatenate([rows, rows, rows])  # every frame appears three times (e.g. silent frames)
    chosen = select_reference_frames(features, count)
    assert len(set(chosen.tolist())) == count
    assert all(0 <= i < 12 for i in chosen)
    if count >= 4:  # the first four picks cover the four distinct frames before any repeat
        assert len({i % 4 for i in chosen[:4].tolist()}) == 4


@pytest.mark.parametrize("count", [0, 11])
def test_select_reference_frames_rejects_impossible_counts(count):
    with pytest.raises(ValueError):
        select_reference_frames(np.zeros((10, 2)), count)


def _train_metadata(data):
    outputs = TalkingHeadDataParserConfig(data=data).setup().get_dataparser_outputs("train")
    return talking_head_metadata(outputs.metadata)


def test_references_come_from_training_frames_and_differ_in_audio(sample_dataset):
    from PIL import Image

    meta = _train_metadata(sample_dataset)
    refs = pick_reference_frames(meta, 4)
    assert refs.images.shape == (1, 4, 48, 48, 3) and refs.images.dtype == torch.uint8
    frames = refs.frame_indices[0].tolist()
    assert len(set(frames)) == 4 and all(f < 37 for f in frames)
    first = np.array(Image.open(sample_dataset / "images" / f"{frames[0]:05d}.png").convert("RGB"))
    assert torch.equal(refs.images[0, 0], torch.from_numpy(first))
    assert torch.equal(refs.audio_rows[0], refs.frame_indices[0])
    assert torch.equal(refs.camera_to_worlds[0, 1], meta.identities[0].train_camera_to_worlds[frames[1]])
    assert torch.equal(refs.intrinsics[0], meta.identities[0].intrinsics.expand(4, 4))
    # spread over audio: the chosen frames are farther apart in audio than consecutive frames
    table = meta.audio_features
    chosen = table[refs.audio_rows[0]]
    spread = torch.cdist(chosen, chosen)[~torch.eye(4, dtype=torch.bool)].mean()
    neighbours = (table[1:37] - table[:36]).norm(dim=1).mean()
    assert spread > neighbours


def test_short_clips_repeat_references_and_bad_counts_are_refused(sample_dataset):
    meta = _train_metadata(sample_dataset)
    refs = pick_reference_frames(meta, 40)  # more than the 37 training frames
    assert refs.images.shape[:2] == (1, 40)
    assert len(set(refs.frame_indices[0].tolist())) == 37
    with pytest.raises(ValueError, match="num_references must be at least 1"):
        pick_reference_frames(meta, 0)


def test_reference_encoder_keeps_resolution_and_appends_rgb():
    torch.manual_seed(0)
    encoder = ReferenceEncoder(feature_dim=12, hidden_dim=8)
    images = torch.rand(2, 9, 7, 3)
    out = encoder(images)
    assert out.shape == (2, 12, 9, 7) and encoder.out_dim == 12
    torch.testing.assert_close(out[:, -3:], images.permute(0, 3, 1, 2))
    # the learned channels see the image: changing one pixel changes features around it only (7x7 field)
    changed = images.clone()
    changed[0, 4, 3] = 1.0 - changed[0, 4, 3]
    diff = (encoder(changed) - out)[:, :-3].abs().amax(1)
    assert diff[0, 4, 3] > 0 and diff[1].max() == 0 and diff[0, 8, 6] == 0 and diff[0, 0, 0] == 0


@pytest.mark.parametrize("feature_dim", [2, 3])
def test_reference_encoder_needs_more_than_rgb(feature_dim):
    with pytest.raises(ValueError):
        ReferenceEncoder(feature_dim=feature_dim)


# ---------------------------------------------------------------------------------------------------------------
# warper
# ---------------------------------------------------------------------------------------------------------------


def warper_inputs(p: int = 16, refs: int = 3, audio_dim: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(p, 6, generator=g),
        torch.randn(p, audio_dim, generator=g),
        torch.randn(refs, audio_dim, generator=g),
        torch.nn.functional.normalize(torch.randn(p, 3, generator=g), dim=-1),
        torch.nn.functional.normalize(torch.randn(p, refs, 3, generator=g), dim=-1),
    )


def test_warper_offsets_start_at_zero():
    torch.manual_seed(0)
    position, audio, ref_audio, direction, ref_direction = warper_inputs()
    offsets = Warper(6, 4, hidden_dim=16)(position, audio, ref_audio, direction, ref_direction)
    assert offsets.shape == (16, 3, 2)
    assert torch.equal(offsets, torch.zeros_like(offsets))


def test_warper_learns_audio_dependent_offsets():
    torch.manual_seed(0)
    warper = Warper(6, 4, hidden_dim=32)
    optimizer = torch.optim.Adam(warper.parameters(), lr=1e-2)
    position, audio, ref_audio, direction, ref_direction = warper_inputs(p=256, seed=1)
    target = torch.stack([audio[:, 0], torch.zeros(256)], -1)[:, None].expand(256, 3, 2)  # u = audio[0], v = 0
    for _ in range(150):
        loss = ((warper(position, audio, ref_audio, direction, ref_direction) - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    position, audio, ref_audio, direction, ref_direction = warper_inputs(p=64, seed=10_000)
    with torch.no_grad():
        offsets = warper(position, audio, ref_audio, direction, ref_direction)
        other = audio.clone()
        other[:, 0] += 1.0
        shifted = warper(position, other, ref_audio, direction, ref_direction)
    assert offsets.abs().max() > 0.1
    u = offsets[..., 0].mean(1)
    assert torch.corrcoef(torch.stack([u, audio[:, 0]]))[0, 1] > 0.9
    # the same point with a different target audio is warped differently: about +1 pixel more in u
    assert 0.5 < (shifted[..., 0] - offsets[..., 0]).mean().item() < 1.5
    assert (shifted[..., 1] - offsets[..., 1]).abs().mean().item() < 0.25


def test_warper_shared_and_per_point_reference_audio_agree():
    torch.manual_seed(0)
    warper = Warper(6, 4, hidden_dim=16)
    torch.nn.init.normal_(warper.net[-1].weight)  # leave the zero start so the outputs are informative
    position, audio, ref_audio, direction, ref_direction = warper_inputs()
    shared = warper(position, audio, ref_audio, direction, ref_direction)
    per_point = warper(position, audio, ref_audio.expand(16, 3, 4), direction, ref_direction)
    assert shared.abs().max() > 0
    torch.testing.assert_close(shared, per_point)
    # and the reference audio matters: another reference's audio gives other offsets
    assert not torch.allclose(shared, warper(position, audio, ref_audio.flip(0), direction, ref_direction))


def test_audio_aware_warper_requires_audio():
    position, audio, ref_audio, direction, ref_direction = warper_inputs()
    warper = Warper(6, 4, hidden_dim=16)
    with pytest.raises(ValueError, match="audio"):
        warper(position, None, ref_audio, direction, ref_direction)
    with pytest.raises(ValueError, match="audio"):
        warper(position, audio, None, direction, ref_direction)


def test_audio_blind_warper_runs_without_audio_and_ignores_it():
    torch.manual_seed(0)
    position, audio, ref_audio, direction, ref_direction = warper_inputs()
    warper = Warper(6, 0, hidden_dim=16)
    assert warper.reference_audio_in is None
    torch.nn.init.normal_(warper.net[-1].weight)
    without = warper(position, None, None, direction, ref_direction)
    assert without.shape == (16, 3, 2) and without.abs().max() > 0
    torch.testing.assert_close(without, warper(position, audio, ref_audio, direction, ref_direction))


def test_offset_length_loss_is_the_mean_euclidean_length():
    offsets = torch.tensor([[[3.0, 4.0]], [[0.0, 0.0]]], requires_grad=True)
    loss = offset_length_loss(offsets)
    assert loss.item() == pytest.approx(2.5, abs=1e-5)
    loss.backward()
    assert torch.isfinite(offsets.grad).all()  # finite even at zero length
    torch.testing.assert_close(offsets.grad[0, 0], torch.tensor([0.3, 0.4]))
    assert offset_length_loss(torch.tensor([[[1.0, 0.0], [0.0, -2.0]], [[6.0, 8.0], [0.0, 0.0]]])).item() == (
        pytest.approx((1 + 2 + 10 + 0) / 4, abs=1e-5)
    )
    assert offset_length_loss(torch.zeros(0, 3, 2)).item() == 0.0


# ---------------------------------------------------------------------------------------------------------------
# audio-aware aggregation
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("token_dim", "heads"), [(128, 4), (16, 4), (8, 2)])
def test_reference_with_the_target_audio_gets_the_largest_attention(token_dim, heads):
    num_refs, audio_dim, points = 4, 16, 6
    for seed in range(4):
        torch.manual_seed(seed)
        aggregation = AudioAwareAggregation(audio_dim, 10, 8, token_dim=token_dim, num_heads=heads)
        reference_audio = torch.randn(num_refs, audio_dim)
        for match in range(num_refs):
            audio = reference_audio[match].expand(points, audio_dim)
            _, weights = aggregation(audio, reference_audio, torch.randn(points, num_refs, 10))
            assert weights.shape == (points, heads, num_refs)
            mean = weights.mean(1)
            assert (mean.argmax(-1) == match).all(), (seed, match, mean[0])


def test_audio_aware_aggregation_shapes_and_shared_reference_audio():
    torch.manual_seed(0)
    aggregation = AudioAwareAggregation(5, 7, 9, token_dim=16, num_heads=4)
    audio, reference_audio, features = torch.randn(6, 5), torch.randn(3, 5), torch.randn(6, 3, 7)
    out, weights = aggregation(audio, reference_audio, features)
    assert out.shape == (6, 9) and weights.shape == (6, 4, 3)
    torch.testing.assert_close(weights.sum(-1), torch.ones(6, 4))
    out_pp, weights_pp = aggregation(audio, reference_audio.expand(6, 3, 5), features)
    torch.testing.assert_close(out, out_pp)
    torch.testing.assert_close(weights, weights_pp)


def test_audio_aware_aggregation_depends_on_audio_and_features():
    torch.manual_seed(0)
    aggregation = AudioAwareAggregation(5, 7, 9, token_dim=16, num_heads=4)
    audio, reference_audio, features = torch.randn(6, 5), torch.randn(3, 5), torch.randn(6, 3, 7)
    out, _ = aggregation(audio, reference_audio, features)
    assert not torch.allclose(out, aggregation(torch.randn(6, 5), reference_audio, features)[0], atol=1e-4)
    assert not torch.allclose(out, aggregation(audio, torch.randn(3, 5), features)[0], atol=1e-4)
    assert not torch.allclose(out, aggregation(audio, reference_audio, torch.randn(6, 3, 7))[0], atol=1e-4)


def test_audio_blind_aggregation_ignores_audio():
    torch.manual_seed(0)
    aggregation = AudioBlindAggregation(7, 9, token_dim=16, num_heads=4)
    features = torch.randn(6, 3, 7)
    out, weights = aggregation(torch.randn(6, 5), torch.randn(3, 5), features)
    assert out.shape == (6, 9) and weights.shape == (6, 4, 3)
    for audio, reference_audio in [(torch.randn(6, 5), torch.randn(3, 5)), (None, None)]:
        other, other_weights = aggregation(audio, reference_audio, features)
        assert torch.equal(out, other) and torch.equal(weights, other_weights)
    assert not torch.allclose(out, aggregation(None, None, torch.randn(6, 3, 7))[0], atol=1e-4)


def test_cross_attention_block_rejects_indivisible_heads():
    with pytest.raises(ValueError):
        CrossAttentionBlock(10, num_heads=4)


# ---------------------------------------------------------------------------------------------------------------
# audio smoothing
# ---------------------------------------------------------------------------------------------------------------

SEGMENTS = torch.tensor([0, 0, 0, 1, 1, 2])


def test_clip_bounds():
    first, last = clip_bounds(SEGMENTS)
    assert first.tolist() == [0, 0, 0, 3, 3, 5]
    assert last.tolist() == [2, 2, 2, 4, 4, 5]


def test_neighbour_rows_stay_in_the_clip_and_are_centred():
    segments = torch.tensor([0] * 7 + [1] * 3 + [2] * 1 + [3] * 6)
    first, last = clip_bounds(segments)
    rows = torch.arange(len(segments))
    neighbours = neighbour_rows(rows, 2, first, last)
    assert neighbours.shape == (len(segments), 5)
    assert torch.equal(segments[neighbours], segments[:, None].expand(-1, 5))
    assert torch.equal(neighbours[:, 2], rows)
    assert (neighbours.diff(dim=1) >= 0).all()
    assert neighbours[3].tolist() == [1, 2, 3, 4, 5]  # interior row: plain window
    assert neighbours[7].tolist() == [7, 7, 7, 8, 9]  # first row of clip 1: clamped at its start
    assert neighbours[10].tolist() == [10] * 5  # one-frame clip
    assert neighbours[16].tolist() == [14, 15, 16, 16, 16]  # last row of the table
    # a subset of rows gives the same windows
    assert torch.equal(neighbour_rows(torch.tensor([9, 0]), 2, first, last), neighbours[[9, 0]])
    assert neighbour_rows(rows[:3], 0, first, last).tolist() == [[0], [1], [2]]


def test_audio_smoother_starts_as_a_centred_window_and_keeps_constants():
    torch.manual_seed(0)
    smoother = AudioSmoother(code_dim=6, radius=3)
    codes = torch.randn(5, 7, 6)
    smoothed, weights = smoother(codes)
    assert smoothed.shape == (5, 6) and weights.shape == (5, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(5))
    assert (weights.argmax(-1) == 3).all()
    torch.testing.assert_close(weights, weights.flip(-1))  # symmetric about the current frame
    assert (weights[:, :3].diff(dim=-1) > 0).all()
    torch.testing.assert_close(smoothed, torch.einsum("bk,bkc->bc", weights, codes))
    # with a trained (non-zero) scorer the weights depend on the codes but a constant stays constant
    torch.nn.init.normal_(smoother.scorer[-1].weight)
    constant = torch.randn(5, 1, 6).expand(5, 7, 6)
    smoothed, weights = smoother(constant)
    torch.testing.assert_close(smoothed, constant[:, 0])
    torch.testing.assert_close(weights.sum(-1), torch.ones(5))
    assert not torch.allclose(smoother(codes)[1][0], smoother(torch.randn(5, 7, 6))[1][0])


# ---------------------------------------------------------------------------------------------------------------
# fields
# ---------------------------------------------------------------------------------------------------------------

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def field_inputs(n: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    positions = torch.rand(n, 3, generator=g) * 1.8 - 0.9
    directions = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return positions, directions


def test_audio_independent_field_refuses_audio():
    torch.manual_seed(0)
    field = AudioConditionedField(AABB, 4, audio_code_dim=0, condition_dim=5, hidden_dim=16, num_layers=2)
    positions, directions = field_inputs()
    condition = torch.randn(32, 5)
    with pytest.raises(ValueError, match="audio-independent"):
        field(positions, directions, audio_code=torch.randn(32, 8), condition=condition)
    with pytest.raises(ValueError, match="reference features"):
        field(positions, directions)
    out = field(positions, directions, condition=condition)
    assert out["density"].shape == (32, 1) and out["rgb"].shape == (32, 3) and out["semantics"].shape == (32, 4)
    # no audio input anywhere: the first layers only take position (+ direction) encodings and the condition
    pos_dim = field.position_encoding.get_out_dim()
    assert field.base[0].in_features == pos_dim + 5
    assert field.color_head[0].in_features == 32 + field.direction_encoding.get_out_dim()
    # the condition is used
    assert not torch.allclose(out["density"], field(positions, directions, condition=torch.randn(32, 5))["density"])


def test_audio_conditioned_field_depends_on_the_audio_code():
    torch.manual_seed(0)
    field = AudioConditionedField(AABB, 4, audio_code_dim=8, condition_dim=5, hidden_dim=16, num_layers=2)
    positions, directions = field_inputs()
    condition = torch.randn(32, 5)
    with pytest.raises(ValueError, match="audio code"):
        field(positions, directions, condition=condition)
    a = field(positions, directions, audio_code=torch.randn(32, 8), condition=condition)
    b = field(positions, directions, audio_code=torch.randn(32, 8), condition=condition)
    for key in ("density", "rgb", "semantics"):
        assert not torch.allclose(a[key], b[key], atol=1e-5), key
    assert (a["density"] >= 0).all() and (a["rgb"] >= 0).all() and (a["rgb"] <= 1).all()


@pytest.mark.parametrize("encoding", ["positional", "hashgrid"])
def test_field_density_is_zero_outside_the_box(encoding):
    torch.manual_seed(0)
    field = AudioConditionedField(
        AABB,
        3,
        audio_code_dim=4,
        hidden_dim=16,
        num_layers=2,
        encoding=encoding,
        hash_levels=4,
        hash_log2_size=10,
        hash_max_resolution=64,
    )
    inside, directions = field_inputs(16)
    outside = inside.clone()
    outside[:8, 0] = 1.2
    outside[8:, 2] = -3.0
    code = torch.randn(16, 4)
    out_in = field(inside, directions, audio_code=code)
    out_out = field(outside, directions, audio_code=code)
    assert (out_in["density"] > 0).all()
    assert torch.equal(out_out["density"], torch.zeros(16, 1))
    assert out_in["rgb"].shape == (16, 3) and out_in["semantics"].shape == (16, 3)
    # batched (*batch, 3) inputs keep their shape
    assert field(inside.reshape(4, 4, 3), directions.reshape(4, 4, 3), code.reshape(4, 4, 4))["rgb"].shape == (4, 4, 3)


def test_hashgrid_field_trains_on_cpu():
    torch.manual_seed(0)
    field = AudioConditionedField(
        AABB,
        3,
        audio_code_dim=0,
        hidden_dim=16,
        num_layers=1,
        encoding="hashgrid",
        hash_levels=4,
        hash_log2_size=10,
        hash_max_resolution=64,
    )
    assert field.position_encoding.get_out_dim() == 8
    positions, directions = field_inputs(64)
    field(positions, directions)["density"].sum().backward()
    grads = [p.grad for p in field.position_encoding.parameters()]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_unknown_encoding_is_rejected():
    with pytest.raises(ValueError, match="encoding"):
        AudioConditionedField(AABB, 3, encoding="fourier")


# ---------------------------------------------------------------------------------------------------------------
# mask blend
# ---------------------------------------------------------------------------------------------------------------


def test_blend_dual_samples_per_ray_group():
    groups = torch.tensor([AUDIO_ONLY, OTHER_ONLY, OVERLAP])
    rays, samples = 3, 2
    aa = {
        "density": torch.tensor([[[1.0], [2.0]], [[7.0], [7.0]], [[0.5], [3.0]]]),
        "rgb": torch.tensor([[[0.1, 0.2, 0.3]] * 2, [[9.0, 9.0, 9.0]] * 2, [[1.0, 0.0, 0.0]] * 2]),
        "probs": torch.tensor([[[0.6, 0.4]] * 2, [[5.0, 5.0]] * 2, [[1.0, 0.0]] * 2]),
    }
    ai = {  # values of rays a field does not render are garbage and must not leak
        "density": torch.tensor([[[8.0], [8.0]], [[4.0], [5.0]], [[1.5], [1.0]]]),
        "rgb": torch.tensor([[[-4.0, 4.0, 4.0]] * 2, [[0.7, 0.8, 0.9]] * 2, [[0.0, 0.0, 1.0]] * 2]),
        "probs": torch.tensor([[[3.0, 3.0]] * 2, [[0.1, 0.9]] * 2, [[0.0, 1.0]] * 2]),
    }
    mask_aa = torch.tensor([[[0.9], [0.2]], [[0.3], [0.3]], [[0.75], [0.1]]])
    mask_ai = torch.tensor([[[0.4], [0.4]], [[0.6], [0.5]], [[0.25], [0.3]]])
    out = blend_dual_samples(aa, ai, mask_aa, mask_ai, groups)
    assert out["density"].shape == (rays, samples, 1) and out["rgb"].shape == (rays, samples, 3)
    for key in ("density", "rgb", "probs"):
        assert torch.equal(out[key][0], aa[key][0]), key  # audio-only ray: the audio field's values exactly
        assert torch.equal(out[key][1], ai[key][1]), key  # other-only ray: the other field's values exactly
    # overlap ray: densities add, colours mix by the normalised masks
    torch.testing.assert_close(out["density"][2], torch.tensor([[2.0], [4.0]]))
    torch.testing.assert_close(out["rgb"][2], torch.tensor([[0.75, 0.0, 0.25], [0.25, 0.0, 0.75]]))
    torch.testing.assert_close(out["probs"][2], torch.tensor([[0.75, 0.25], [0.25, 0.75]]))
    # masks: a field that did not render a ray contributes no mask there
    torch.testing.assert_close(out["mask_aa"][:, :, 0], torch.tensor([[0.9, 0.2], [0.0, 0.0], [0.75, 0.1]]))
    torch.testing.assert_close(out["mask_ai"][:, :, 0], torch.tensor([[0.0, 0.0], [0.6, 0.5], [0.25, 0.3]]))


def test_blend_dual_samples_overlap_with_empty_masks_stays_finite():
    groups = torch.tensor([OVERLAP])
    aa = {"density": torch.ones(1, 2, 1), "rgb": torch.full((1, 2, 3), 0.2), "probs": torch.ones(1, 2, 2)}
    ai = {"density": torch.ones(1, 2, 1), "rgb": torch.full((1, 2, 3), 0.6), "probs": torch.ones(1, 2, 2)}
    out = blend_dual_samples(aa, ai, torch.zeros(1, 2, 1), torch.zeros(1, 2, 1), groups)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert ((out["rgb"] >= 0.2 - 1e-6) & (out["rgb"] <= 0.6 + 1e-6)).all()  # still a mix of the two colours
    torch.testing.assert_close(out["density"], torch.full((1, 2, 1), 2.0))


def test_density_mask_blend_takes_colour_from_the_field_that_holds_matter():
    # one overlap ray, two samples: the first lies on the audio field's surface (the other field is empty
    # there), the second in empty space for both; both masks claim both samples equally
    groups = torch.tensor([OVERLAP])
    aa = {"density": torch.tensor([[[50.0], [0.0]]]), "rgb": torch.full((1, 2, 3), 0.8), "probs": torch.ones(1, 2, 2)}
    ai = {"density": torch.zeros(1, 2, 1), "rgb": torch.full((1, 2, 3), 0.1), "probs": torch.ones(1, 2, 2)}
    half = torch.full((1, 2, 1), 0.5)
    by_mask = blend_dual_samples(aa, ai, half, half, groups)
    by_density = blend_dual_samples(aa, ai, half, half, groups, weighting="density-mask")
    torch.testing.assert_close(by_mask["rgb"][0, 0], torch.full((3,), 0.45))  # the empty field's colour leaks in
    assert (by_density["rgb"][0, 0] - 0.8).abs().max() < 1e-3  # the surface keeps its own field's colour
    torch.testing.assert_close(by_density["rgb"][0, 1], torch.full((3,), 0.45))  # empty space: the masks decide
    torch.testing.assert_close(by_density["density"], by_mask["density"])  # densities still add
    # a field's mask still scales its share where both hold matter
    both = {**ai, "density": torch.tensor([[[50.0], [0.0]]])}
    skewed = blend_dual_samples(
        aa, both, torch.full((1, 2, 1), 0.75), torch.full((1, 2, 1), 0.25), groups, weighting="density-mask"
    )
    torch.testing.assert_close(skewed["rgb"][0, 0], torch.full((3,), 0.75 * 0.8 + 0.25 * 0.1))


def test_masked_fields_blend_keeps_each_fields_matter_inside_its_region():
    # one overlap ray: the audio field has a surface at the first sample, but its mask says that point
    # belongs to the other region; the other field's surface is at the second sample
    groups = torch.tensor([OVERLAP])
    aa = {"density": torch.tensor([[[40.0], [0.0]]]), "rgb": torch.full((1, 2, 3), 0.9), "probs": torch.ones(1, 2, 2)}
    ai = {"density": torch.tensor([[[0.0], [40.0]]]), "rgb": torch.full((1, 2, 3), 0.2), "probs": torch.ones(1, 2, 2)}
    mask_aa = torch.tensor([[[0.1], [0.1]]])
    mask_ai = torch.tensor([[[0.3], [0.3]]])
    paper = blend_dual_samples(aa, ai, mask_aa, mask_ai, groups)
    masked = blend_dual_samples(aa, ai, mask_aa, mask_ai, groups, weighting="masked-fields")
    torch.testing.assert_close(paper["density"][0, :, 0], torch.tensor([40.0, 40.0]))  # the stray surface occludes
    torch.testing.assert_close(masked["density"][0, :, 0], torch.tensor([10.0, 30.0]))  # scaled by the shares 1/4, 3/4
    assert (masked["rgb"][0, 1] - 0.2).abs().max() < 1e-3  # the other field's surface keeps its colour
    assert (masked["rgb"][0, 0] - 0.9).abs().max() < 1e-3  # what remains of the stray matter keeps its own
    for out in (paper, masked):
        assert all(torch.isfinite(v).all() for v in out.values())
