"""Train 2 iterations, export, import, and check that the decoded model is the trained one."""

from __future__ import annotations

import shutil

import pytest
import torch
from nerfstudio.utils.eval_utils import eval_setup
from ns_training import reduced_config, train_in_process

from nerfcompress.bitstream.container import read_container_index
from nerfcompress.bitstream.quantized_tensors import round_trip
from nerfcompress.cli.export import Export
from nerfcompress.plugin.file_layout import NETWORK_PRECISION_BITS
from nerfcompress.plugin.import_model import import_file
from nerfcompress.tables import ShaciraTable

pytestmark = pytest.mark.slow


def _round_like_export(model) -> None:
    """What the file stores of a trained model: quantised networks and average embedding, fp16
    decoders and codebooks."""

    def stored(tensor):
        return torch.from_numpy(round_trip(tensor.detach().numpy(), NETWORK_PRECISION_BITS))

    with torch.no_grad():
        for param in model.network_parameters().values():
            param.copy_(stored(param))
        for table in model.tables():
            params = table.decoder.parameters() if isinstance(table, ShaciraTable) else [table.codebooks]
            for param in params:
                param.copy_(param.half().float())
            table.clear_cache()
        weight = model.field.embedding_appearance.embedding.weight
        weight.copy_(stored(weight.mean(dim=0)).expand_as(weight))


def _stored_codes(table) -> torch.Tensor:
    """The integers the file stores of a table: SHACIRA latents or VQAD indices."""
    return table.integer_latents() if isinstance(table, ShaciraTable) else table.integer_indices()


@pytest.fixture(scope="module", params=["shacira-nerfacto", "vqad-nerfacto"])
def exported(tiny_scene, tmp_path_factory, request):
    tmp_path = tmp_path_factory.mktemp("export")
    config = reduced_config(request.param, tiny_scene, tmp_path)
    config.save_config()
    train_in_process(config)
    config_path = config.get_base_dir() / "config.yml"
    output = tmp_path / "scene.ncmp"
    Export(load_config=config_path, output=output).main()
    yield config_path, output
    shutil.rmtree(tmp_path, ignore_errors=True)  # a default-sized VQAD checkpoint is 1.3 GB


def test_decoded_model_renders_like_the_trained_one(exported, tmp_path):
    config_path, output = exported
    data = output.read_bytes()
    _, trained, _, _ = eval_setup(config_path, test_mode="inference")
    imported_config = import_file(data, tmp_path / "decoded")
    _, imported, _, step = eval_setup(imported_config, test_mode="inference")
    assert step == 1
    for ours, theirs in zip(trained.model.tables(), imported.model.tables()):
        assert torch.equal(_stored_codes(ours), _stored_codes(theirs))
    _round_like_export(trained.model)
    camera = trained.datamanager.train_dataparser_outputs.cameras[0:1]
    stored_c2w = imported.datamanager.train_dataparser_outputs.cameras[0:1].camera_to_worlds
    assert (camera.camera_to_worlds - stored_c2w).abs().max() <= 1e-3  # quantised poses, for the viewer only
    with torch.no_grad():
        expected = trained.model.get_outputs_for_camera(camera.to(trained.device))["rgb"]
        found = imported.model.get_outputs_for_camera(camera.to(imported.device))["rgb"]
    assert (expected.cpu() - found.cpu()).abs().max() <= 1e-5


def test_the_size_a_trained_model_reports_is_its_files_to_the_byte(exported):
    config_path, output = exported
    _, trained, _, _ = eval_setup(config_path, test_mode="inference")
    assert trained.model.estimated_size_bytes()["total"] == output.stat().st_size
    header, sections = read_container_index(output.read_bytes())
    method = header["method"]
    assert method in ("shacira-nerfacto", "vqad-nerfacto")
    assert [g["table"] for g in header["grids"]] == [method.split("-")[0]] * 3
    names = [s.name for s in sections]
    assert names[0] == "networks" and names[-1] == "cameras"  # what every level needs first, the viewer's last


def test_imported_run_loads_like_ns_viewer_without_training_images(exported, tmp_path):
    _, output = exported
    config_path = import_file(output.read_bytes(), tmp_path / "decoded")
    config, pipeline, _, _ = eval_setup(config_path, test_mode="test")  # what ns-viewer calls
    assert config.get_base_dir().is_dir()  # ns-viewer's log goes there, created without parents
    try:
        image = pipeline.datamanager.train_dataset[0]["image"]  # the viewer's camera thumbnails
        assert image.ndim == 3
        assert len(pipeline.datamanager.train_dataset) == 3
    finally:
        pipeline.datamanager.__del__()
