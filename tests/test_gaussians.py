"""aenerf-gs: seeding from the dataset, the audio/non-audio split, densification and checkpoints (training,
rendering and evaluating like every method: test_method_contract)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aenerf_ns.data.dataset_format import DatasetFormatError
from aenerf_ns.data.parsing_labels import AUDIO_REGION_LABELS, BACKGROUND, FACE_LOWER, FACE_UPPER, MOUTH_INTERIOR

GS_SMALL = dict(num_gaussians=800, audio_code_dim=8, audio_hidden_dim=32, torso_hidden_dim=16, torso_latent_dim=4)
"""aenerf-gs model settings small enough for a model test to run in a second on a CPU."""


def _train_metadata(data: Path):
    from aenerf_ns.data.talking_head_dataparser import TalkingHeadDataParserConfig
    from aenerf_ns.data.talking_head_metadata import talking_head_metadata

    outputs = TalkingHeadDataParserConfig(data=data).setup().get_dataparser_outputs("train")
    return outputs, talking_head_metadata(outputs.metadata)


def _model(data: Path, **settings):
    from aenerf_ns.gaussians.gaussian_model import GaussianTalkingHeadModelConfig

    outputs, _ = _train_metadata(data)
    torch.manual_seed(0)
    config = GaussianTalkingHeadModelConfig(**{**GS_SMALL, **settings})
    return config.setup(
        scene_box=outputs.scene_box, num_train_data=len(outputs.image_filenames), metadata=outputs.metadata
    ), outputs


def _relabel(data: Path, mapping: dict[int, int]) -> None:
    """Rewrite every parsing map of a dataset copy, replacing label ids by `mapping`."""
    for path in (data / "parsing").glob("*.png"):
        labels = np.array(Image.open(path))
        for old, new in mapping.items():
            labels[labels == old] = new
        Image.fromarray(labels).save(path)


def test_seed_points_lie_on_the_person_and_weight_the_audio_region(sample_dataset):
    from aenerf_ns.gaussians.initial_gaussians import seed_points

    _, meta = _train_metadata(sample_dataset)
    seeds = seed_points(meta, 400, frames=4, audio_region_weight=3.0)
    assert seeds.positions.shape == (400, 3) and torch.isfinite(seeds.positions).all()
    assert (seeds.labels != BACKGROUND).all()
    # head points around the head centre (about one unit in radius), none behind the cameras
    head = seeds.labels != 1
    assert seeds.positions[head].norm(dim=-1).median() < 1.6
    assert (seeds.positions[:, 2] < 3.0).all()
    # the audio region is drawn about three times as often as its share of the pixels
    region = torch.isin(seeds.labels, torch.tensor(AUDIO_REGION_LABELS)).float().mean()
    uniform = seed_points(meta, 400, frames=4, audio_region_weight=1.0)
    plain = torch.isin(uniform.labels, torch.tensor(AUDIO_REGION_LABELS)).float().mean()
    assert region > 1.8 * plain
    assert (seeds.spacing > 0).all() and (seeds.spacing <= 0.1).all()
    # colours come from the frames: lower-face points are skin-like, not the background's
    assert seeds.colors.shape == (400, 3) and 0 <= float(seeds.colors.min()) and float(seeds.colors.max()) <= 1


def test_parsing_maps_without_a_person_or_without_a_mouth_are_refused(dataset_copy):
    from aenerf_ns.gaussians.initial_gaussians import seed_points

    _relabel(dataset_copy, {FACE_LOWER: FACE_UPPER, MOUTH_INTERIOR: FACE_UPPER})
    _, meta = _train_metadata(dataset_copy)
    with pytest.raises(DatasetFormatError, match="no face_lower and mouth_interior pixels"):
        seed_points(meta, 100)
    _relabel(dataset_copy, {label: BACKGROUND for label in range(1, 6)})
    _, meta = _train_metadata(dataset_copy)
    with pytest.raises(DatasetFormatError, match="mark \\(almost\\) no person"):
        seed_points(meta, 100)


def test_several_identities_are_refused(tmp_path):
    from aenerf_ns.gaussians.initial_gaussians import seed_points
    from aenerf_ns.synthetic.synthetic_dataset import write_synthetic_sample

    write_synthetic_sample(tmp_path, identities=2, seconds=1.0, resolution=24)
    _, meta = _train_metadata(tmp_path)
    with pytest.raises(DatasetFormatError, match="models one person, but the data holds 2 identities"):
        seed_points(meta, 100)


def test_audio_moves_only_the_audio_region_gaussians(sample_dataset):
    model, outputs = _model(sample_dataset)
    model.eval()
    member = model.audio_member
    assert 0 < int(member.sum()) < len(member)
    for layer in (model.audio_deformation.net[-1],):  # trained networks are not the zero-initialised identity
        torch.nn.init.normal_(layer.weight, std=0.5)
    camera = outputs.cameras[10:11]
    frames = []
    for row in (5.0, 40.0):
        camera.metadata = {"audio_index": torch.tensor([[row]]), "identity": torch.tensor([[0.0]])}
        with torch.no_grad():
            frames.append(model._frame_gaussians(camera))
    moved_any = torch.zeros_like(member)
    for key in ("means", "quats", "scales", "opacities", "colors"):
        change = (frames[0][key] - frames[1][key]).abs().reshape(len(member), -1).amax(-1)
        assert (change[~member] == 0).all(), f"{key} of non-audio Gaussians changed with the audio"
        moved_any |= change > 1e-6
    assert moved_any[member].float().mean() > 0.9, "the audio moves the audio-region Gaussians"
    # and the render changes only where the audio-region Gaussians are: in the lower half of the face
    camera.metadata = {"audio_index": torch.tensor([[5.0]]), "identity": torch.tensor([[0.0]])}
    a = model.get_outputs_for_camera(camera)
    camera.metadata = {"audio_index": torch.tensor([[40.0]]), "identity": torch.tensor([[0.0]])}
    b = model.get_outputs_for_camera(camera)
    assert (a["rgb"] - b["rgb"]).abs().max() > 1e-3


def test_a_float16_audio_table_halves_its_memory_and_changes_no_render_materially(sample_dataset):
    full, outputs = _model(sample_dataset)
    half, _ = _model(sample_dataset, audio_table_dtype="float16")
    for model in (full, half):
        model.eval()
    torch.nn.init.normal_(full.audio_deformation.net[-1].weight, std=0.5)  # a trained (non-still) deformation
    assert not any("audio_table" in key for key in full.state_dict()), "the table is rebuilt, never checkpointed"
    half.load_state_dict(full.state_dict())  # a float32 run's checkpoint loads into a float16-table model

    assert half.audio_table.dtype == torch.float16 and full.audio_table.dtype == torch.float32
    rows, per_row = full.audio_table.shape
    assert half.audio_table.nbytes / rows == 2 * per_row and full.audio_table.nbytes / rows == 4 * per_row
    error = (half.audio_table.float() - full.audio_table).abs()
    assert error.max() <= 1e-3 * full.audio_table.abs().max(), "float16 keeps 3 significant digits"
    assert error.max() < 0.01 * full.audio_table.std()

    camera = outputs.cameras[10:11]
    renders = {}
    for name, model in (("full", full), ("half", half)):
        for row in (5.0, 40.0):
            camera.metadata = {"audio_index": torch.tensor([[row]]), "identity": torch.tensor([[0.0]])}
            with torch.no_grad():
                renders[name, row] = model.get_outputs_for_camera(camera)["rgb"]
    speech = (renders["full", 5.0] - renders["full", 40.0]).abs().max()
    rounding = max((renders["full", r] - renders["half", r]).abs().max() for r in (5.0, 40.0))
    assert speech > 1e-3, "the audio moves the mouth"
    assert rounding < 1e-4 and rounding < 0.01 * speech, "float16 storage changes the render far less than speech"


def test_audio_beyond_float16_range_is_refused(sample_dataset):
    model, _ = _model(sample_dataset, audio_table_dtype="float16")
    loud = torch.full((4, *model.audio_table.shape[1:]), 1e6)
    with pytest.raises(ValueError, match="beyond float16's range"):
        model.set_audio_track(loud)
    model.set_audio_track(torch.ones(4, model.audio_table.shape[1]))
    assert model.audio_table.dtype == torch.float16 and model.audio_table.shape[0] == 4


def test_audio_blind_model_has_no_audio_deformation(sample_dataset):
    model, outputs = _model(sample_dataset, use_audio=False)
    assert model.audio_deformation is None
    with torch.no_grad():
        result = model.get_outputs_for_camera(outputs.cameras[0:1])
    assert result["rgb"].shape == (48, 48, 3)


def test_seeded_gaussians_cover_the_person(sample_dataset):
    """Before any training the Gaussians lifted from the frames draw the person (the viewer's first picture)."""
    model, outputs = _model(sample_dataset)
    camera = outputs.cameras[0:1]
    camera.metadata = None
    with torch.no_grad():
        result = model.get_outputs_for_camera(camera)
    assert result["accumulation"].max() > 0.5


def test_a_crop_box_holding_no_gaussians_renders_the_background(sample_dataset):
    """The viewer's crop box around empty space: every pixel is the plate, or the viewer's crop colour."""
    from nerfstudio.data.scene_box import OrientedBox
    from nerfstudio.model_components.renderers import background_color_override_context

    model, outputs = _model(sample_dataset)
    camera = outputs.cameras[0:1]
    empty = OrientedBox(R=torch.eye(3), T=torch.tensor([50.0, 50.0, 50.0]), S=torch.full((3,), 0.1))
    assert not empty.within(model.gauss_params["means"]).any()
    with torch.no_grad():
        uncropped = model.get_outputs_for_camera(camera)
        result = model.get_outputs_for_camera(camera, obb_box=empty)
    assert uncropped["accumulation"].max() > 0.5, "without the crop the person is drawn"
    assert torch.equal(result["accumulation"], torch.zeros(48, 48, 1))
    assert torch.allclose(result["rgb"], model.plate_for(48, 48, 0))
    assert (result["parsing_probs"].argmax(-1) == BACKGROUND).all()
    assert torch.isfinite(result["depth"]).all()

    colour = torch.tensor([0.2, 0.4, 0.6])
    with torch.no_grad(), background_color_override_context(colour):
        result = model.get_outputs_for_camera(camera, obb_box=empty)
        cropped_person = model.get_outputs_for_camera(camera)
    assert torch.allclose(result["rgb"], colour.expand(48, 48, 3))
    person = cropped_person["accumulation"][..., 0] > 0.99
    assert person.any() and not torch.allclose(cropped_person["rgb"][person], colour.expand(int(person.sum()), 3))


def test_densification_keeps_the_audio_labels_with_their_gaussians(sample_dataset):
    """Cloning, splitting and pruning (gsplat's strategy) carry each Gaussian's audio-region label along."""
    from aenerf_ns.gaussians.densification import Densification, DensificationConfig

    model, _ = _model(sample_dataset)
    params = model.gauss_params
    optimizers = {name: torch.optim.Adam([p], lr=1e-3) for name, p in params.items()}
    n = model.num_gaussians
    member = model.audio_member.clone()
    colors_before = params["colors"].detach().clone()
    densify = Densification(DensificationConfig(refine_start=0, refine_every=1, grow_grad2d=1e-3))
    means2d = torch.zeros(1, n, 2, requires_grad=True)
    info = {"means2d": means2d, "radii": torch.ones(1, n, dtype=torch.int32), "width": 48, "height": 48,
            "n_cameras": 1, "gaussian_ids": None}  # fmt: skip
    densify.before_backward(params, optimizers, 1, info)
    grow = torch.arange(n) % 7 == 0  # every seventh Gaussian has a large screen-space gradient
    (means2d * grow[None, :, None].float()).sum().backward()
    with torch.no_grad():
        params["opacities"][torch.arange(n) % 11 == 5] = -10.0  # nearly transparent: pruned
    carried = densify.after_backward(params, optimizers, 1, info, {"audio_member": member})
    labels = carried["audio_member"]
    assert len(labels) == len(params["means"]) == len(params["semantics"]) != n
    assert optimizers["means"].param_groups[0]["params"][0] is params["means"]
    # clones and split halves copy their parent's colour: every Gaussian keeps its parent's label
    parent_label = {}
    for color, label in zip(colors_before.tolist(), member.tolist()):
        parent_label.setdefault(tuple(color), set()).add(label)
    for color, label in zip(params["colors"].detach().tolist(), labels.tolist()):
        assert parent_label[tuple(color)] == {label} or len(parent_label[tuple(color)]) > 1
    assert labels.sum() > 0 and (~labels).sum() > 0
    assert "audio_member" not in densify.state


def test_checkpoint_of_another_method_is_refused(sample_dataset):
    from aenerf_ns.gaussians.gaussian_model import WrongCheckpointError

    model, _ = _model(sample_dataset)
    state = {"field_aa.mlp.0.weight": torch.zeros(3, 3)}
    with pytest.raises(WrongCheckpointError, match="not written by aenerf-gs"):
        model.load_state_dict(state)


def test_loading_a_checkpoint_resizes_the_gaussians_in_place(sample_dataset):
    model, outputs = _model(sample_dataset)
    other, _ = _model(sample_dataset, num_gaussians=500)
    means = model.gauss_params["means"]
    model.load_state_dict(other.state_dict())
    assert model.gauss_params["means"] is means, "optimizers built before loading keep the same parameters"
    assert model.num_gaussians == 500 and len(model.audio_member) == 500
    assert torch.equal(model.audio_member, other.audio_member)
    with torch.no_grad():
        a = model.get_outputs_for_camera(outputs.cameras[3:4])["rgb"]
        b = other.get_outputs_for_camera(outputs.cameras[3:4])["rgb"]
    assert torch.allclose(a, b)


@pytest.fixture(scope="module")
def gs_run(sample_dataset, ns_train, tmp_path_factory) -> Path:
    """config.yml of an 8-step `ns-train aenerf-gs-tiny` run that densifies twice on the way."""
    root = tmp_path_factory.mktemp("gs_run")
    cmd = ns_train(sample_dataset, root / "runs", iterations=8, method="aenerf-gs-tiny")
    cmd += ["--pipeline.model.num-gaussians", "1500", "--pipeline.model.densification.refine-start", "2"]
    cmd += ["--pipeline.model.densification.refine-every", "3", "--pipeline.model.densification.grow-grad2d", "1e-6"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=root)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (config,) = root.glob("runs/*/aenerf-gs-tiny/*/config.yml")
    return config


@pytest.mark.slow
def test_training_grows_or_prunes_the_gaussians(gs_run):
    state = torch.load(next(gs_run.parent.glob("nerfstudio_models/step-*.ckpt")), weights_only=False)
    assert state["pipeline"]["_model.gauss_params.means"].shape[0] != 1500, "training grew or pruned Gaussians"
