"""nerfstudio's web viewer on a :class:`~nerfcompress.plugin.progressive.ProgressiveModel`.

Starts the viser-based viewer as ``ns-viewer`` does (nerfstudio/scripts/viewer/run_viewer.py),
on the pipeline decoded from the first level, with the renderer's lock shared with the
progressive model. A markdown panel shows the bytes received and the level rendered; every time
a finer level is swapped in, each connected client is asked to render again. The training
cameras (the file's last section) are drawn once they have arrived.
"""

from __future__ import annotations

import threading
from typing import Optional

from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.utils import writer
from nerfstudio.viewer.render_state_machine import RenderAction
from nerfstudio.viewer.viewer import Viewer

from nerfcompress.plugin.progressive import ProgressiveModel, StreamStatus
from nerfcompress.plugin.stored_cameras import StoredCamerasDataParserConfig

STATUS_TITLE = "**Stream**"


def status_markdown(status: StreamStatus) -> str:
    """The viewer panel's text, e.g. ``**Stream**: 45,123 of 120,426 bytes (37%), level 4 of 12, receiving``."""
    return f"{STATUS_TITLE}: {status.describe()}"


def rerender(viewer: Viewer) -> None:
    """Asks every connected client's render thread to render its current view again."""
    clients = viewer.viser_server.get_clients()
    for client_id, client in list(clients.items()):
        machine = viewer.render_statemachines.get(client_id)
        if machine is not None:
            machine.action(RenderAction("rerender", viewer.get_camera_state(client)))


def draw_cameras(viewer: Viewer, model: ProgressiveModel, max_num_display_images: int) -> None:
    """Draws the stored training cameras (``model.work_dir/cameras.json``) into the viewer's scene."""
    outputs = StoredCamerasDataParserConfig(data=model.work_dir).setup().get_dataparser_outputs("train")
    viewer.config.max_num_display_images = max_num_display_images
    viewer.init_scene(train_dataset=InputDataset(outputs), train_state="completed")


def start_viewer(
    model: ProgressiveModel,
    lock: threading.Lock,
    host: str,
    port: Optional[int],
    max_res: Optional[int],
    max_num_display_images: int,
) -> Viewer:
    """Opens the viewer on ``model``'s pipeline (``model.first_level`` must be set with a pipeline).

    Args:
        model: the progressive model; its ``on_change`` is replaced by the viewer's.
        lock: the lock ``model`` swaps grids under; the renderer holds it while it renders.
        host: websocket host (127.0.0.1 for this machine only, 0.0.0.0 for every interface).
        port: websocket port; None takes a free one from 7007 on.
        max_res: start value of the viewer's "Max res" slider (None: nerfstudio's 512).
        max_num_display_images: training cameras drawn as thumbnails.

    Returns:
        The viewer; its ``viewer_info`` holds the URL.
    """
    config, pipeline = model.config, model.pipeline
    assert config is not None and pipeline is not None, "start_viewer needs the first level"
    config.viewer.websocket_host = host
    config.viewer.websocket_port = port
    config.viewer.max_num_display_images = 0  # the pipeline may hold stand-in cameras: draw the real ones later
    log_path = config.get_base_dir() / config.viewer.relative_log_filename
    log_path.parent.mkdir(parents=True, exist_ok=True)
    viewer = Viewer(
        config.viewer,
        log_filename=log_path,
        datapath=pipeline.datamanager.get_datapath(),
        pipeline=pipeline,
        share=False,
        train_lock=lock,
    )
    config.logging.local_writer.enable = False  # writer.GLOBAL_BUFFER must exist for the render threads
    writer.setup_local_writer(config.logging, max_iter=config.max_num_iterations, banner_messages=viewer.viewer_info)
    viewer.init_scene(
        train_dataset=pipeline.datamanager.train_dataset,
        train_state="completed",
        eval_dataset=pipeline.datamanager.eval_dataset,
    )
    if max_res is not None:
        viewer.control_panel._max_res.value = max_res  # nerfstudio 1.1.5's ControlPanel has no setter
    panel = viewer.viser_server.gui.add_markdown(status_markdown(model.status()), order=-1.0)
    shown = {"levels": model.levels, "cameras": False}
    draw_lock = threading.Lock()

    def on_change(status: StreamStatus) -> None:
        panel.content = status_markdown(status)
        if status.levels != shown["levels"]:
            shown["levels"] = status.levels
            rerender(viewer)
        with draw_lock:
            if status.cameras and not shown["cameras"]:
                shown["cameras"] = True
                draw_cameras(viewer, model, max_num_display_images)

    model.on_change = on_change
    on_change(model.status())  # levels may have arrived while the viewer started
    viewer.update_scene(step=model.step)
    return viewer
