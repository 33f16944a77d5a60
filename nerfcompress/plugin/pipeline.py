"""The pipeline of our methods: nerfstudio's VanillaPipeline that tells its model what a file of it holds.

A model alone does not know its run's method, dataparser or training cameras, which the file
stores beside the grids and networks; :class:`GridPipeline` hands them to the model
(``file_context``) once the datamanager is built, so that the model can count the exact bytes
of its export wherever it is loaded (training, ``ns-eval``, ``ns-viewer``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig

from nerfcompress.plugin.file_layout import FileContext


@dataclass
class GridPipelineConfig(VanillaPipelineConfig):
    """VanillaPipeline settings plus the method name a file records."""

    _target: Type = field(default_factory=lambda: GridPipeline)
    method_name: str = ""
    """The registered method that builds this pipeline (its TrainerConfig.method_name)."""


class GridPipeline(VanillaPipeline):
    """A VanillaPipeline whose model gets the :class:`FileContext` of its datamanager."""

    config: GridPipelineConfig

    def __init__(self, config: GridPipelineConfig, device: str, **kwargs) -> None:
        super().__init__(config, device, **kwargs)
        self.model.file_context = FileContext.from_datamanager(
            config.method_name, self.datamanager, config.datamanager.dataparser
        )
