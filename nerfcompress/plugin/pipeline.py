"""The pipelines of our methods: nerfstudio's, plus telling the model what a file of it holds.

A model alone does not know its run's method, dataparser or training cameras, which the file
stores beside the grids and networks; :class:`GridPipeline` (nerfacto's VanillaPipeline) and
:class:`GridDynamicBatchPipeline` (Instant-NGP's DynamicBatchPipeline) hand them to the model
(``file_context``) once the datamanager is built, so that the model can count the exact bytes
of its export wherever it is loaded (training, ``ns-eval``, ``ns-viewer``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.pipelines.dynamic_batch import DynamicBatchPipeline, DynamicBatchPipelineConfig

from nerfcompress.plugin.file_layout import FileContext


@dataclass
class MethodNameSetting:
    """The method name a file records (a mixin of the pipeline configs)."""

    method_name: str = ""
    """The registered method that builds this pipeline (its TrainerConfig.method_name)."""


class FileContextPipeline:
    """Gives the model the :class:`FileContext` of the datamanager once the pipeline is built (a
    mixin placed before the nerfstudio pipeline class)."""

    def __init__(self, config: MethodNameSetting, device: str, **kwargs) -> None:
        super().__init__(config, device, **kwargs)
        self.model.file_context = FileContext.from_datamanager(
            config.method_name, self.datamanager, config.datamanager.dataparser
        )


@dataclass
class GridPipelineConfig(MethodNameSetting, VanillaPipelineConfig):
    """VanillaPipeline settings plus the method name a file records."""

    _target: Type = field(default_factory=lambda: GridPipeline)


class GridPipeline(FileContextPipeline, VanillaPipeline):
    """A VanillaPipeline whose model gets the :class:`FileContext` of its datamanager."""

    config: GridPipelineConfig


@dataclass
class GridDynamicBatchPipelineConfig(MethodNameSetting, DynamicBatchPipelineConfig):
    """DynamicBatchPipeline settings (Instant-NGP's) plus the method name a file records."""

    _target: Type = field(default_factory=lambda: GridDynamicBatchPipeline)


class GridDynamicBatchPipeline(FileContextPipeline, DynamicBatchPipeline):
    """A DynamicBatchPipeline whose model gets the :class:`FileContext` of its datamanager."""

    config: GridDynamicBatchPipelineConfig
