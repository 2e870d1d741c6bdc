"""The viewer opens on the face: every browser that connects starts at the first training frame's camera.

nerfstudio's viewer starts at a default camera that rarely looks at a talking head. A `ViewerControl` among the
model's attributes is handed the viewer when it starts (`_setup`); this one registers a connect hook with the
viser server that moves each new client's camera to the first training camera (position, orientation, vertical
field of view), looking at the point the camera looks at that is nearest the scene's origin (the head).

A talking head's training cameras sit together in front of the face, and nerfstudio draws each one's image just
in front of it: from the first camera's viewpoint those pictures cover the render, so the viewer would show a
still training frame whose mouth never follows the audio. The control therefore hides the training cameras once
the viewer has drawn them (*Show Train Cams* brings them back).
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.viewer.viewer_elements import ViewerControl


def viser_pose(
    camera: Cameras, scale: float
) -> tuple[Float[np.ndarray, "3"], Float[np.ndarray, "3"], Float[np.ndarray, "3"], float]:
    """(position, look-at point, up direction, vertical fov in radians) of a camera, in the viewer's units."""
    c2w = camera.camera_to_worlds.reshape(3, 4).double().cpu().numpy()
    position = c2w[:, 3]
    forward = -c2w[:, 2]  # nerfstudio cameras look down -z, y up
    up = c2w[:, 1]
    depth = max(float(-position @ forward), 1e-3)  # along the view axis to the point nearest the origin
    look_at = position + forward * depth
    fy = float(camera.fy.reshape(-1)[0])
    height = float(camera.height.reshape(-1)[0])
    fov = 2.0 * float(np.arctan(height / (2.0 * fy)))
    return position * scale, look_at * scale, up, fov


class FaceCamera(ViewerControl):
    """Moves every newly connected viewer client to the first training camera; hides the training cameras."""

    def __init__(self) -> None:
        self.camera: Cameras | None = None

    def _setup(self, viewer) -> None:
        super()._setup(viewer)
        dataset = getattr(viewer.pipeline.datamanager, "train_dataset", None)
        if dataset is not None and len(dataset.cameras) > 0:
            self.camera = dataset.cameras[0:1]
        self.viser_server.on_client_connect(self.face_client)
        draw = viewer.init_scene  # draws the training cameras after the viewer (and this control) is set up

        def draw_then_hide(*args, **kwargs) -> None:
            draw(*args, **kwargs)
            self.hide_training_cameras()

        viewer.init_scene = draw_then_hide

    def hide_training_cameras(self) -> None:
        """Hide the training cameras as the viewer's *Hide Train Cams* button does (its buttons stay in step)."""
        if getattr(self.viewer, "camera_handles", None) is not None and self.viewer.hide_images.visible:
            self.viewer.set_camera_visibility(False)
            self.viewer.toggle_cameravis_button()

    def face_client(self, client) -> None:
        """Put one client's camera at the face (the connect hook)."""
        if self.camera is None:
            return
        from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

        with torch.no_grad():
            position, look_at, up, fov = viser_pose(self.camera, VISER_NERFSTUDIO_SCALE_RATIO)
        with client.atomic():
            client.camera.fov = fov
            client.camera.up_direction = up
            client.camera.position = position
            client.camera.look_at = look_at
