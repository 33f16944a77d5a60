"""Our methods' trainer: nerfstudio's, plus resuming checkpoints whose optimizer groups predate the current ones.

SHACIRA's latents used to train in the ``grids`` optimizer group beside their decoder (each
table's ``[latents, decoder.weight, decoder.bias]``, in table order); they now have a
``latents`` group of their own (one torch parameter group per table, see
:meth:`~nerfcompress.plugin.model.GridNerfactoModel.get_param_groups`). torch's
``load_state_dict`` refuses such a checkpoint's ``grids`` state (its group has more parameters),
so ``ns-train shacira-nerfacto --load-dir OLD_RUN/nerfstudio_models`` failed inside torch.
:class:`GridOptimizers` recognises that layout and splits the saved Adam state between the two
groups (each parameter keeps its own moments), and starts the ``latents`` scheduler at the saved
step; a state it cannot map is refused with a message that says what to do.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Type

from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from torch import nn


class CheckpointError(RuntimeError):
    """A training checkpoint cannot be resumed with this version's optimizer groups."""


def _old_grids_parameters(model) -> List[nn.Parameter]:
    """The ``grids`` group of a checkpoint written before ``latents`` had its own: every table's
    latents, then its current ``grids`` parameters, table by table."""
    return [
        p
        for table in model.tables()
        for p in [*table.parameter_groups().get("latents", []), *table.parameter_groups().get("grids", [])]
    ]


def _regroup(saved: Dict[str, Any], saved_params: List[nn.Parameter], optimizer) -> Dict[str, Any]:
    """A torch optimizer state dict for ``optimizer`` from one saved over ``saved_params``
    (parameter ``i`` of ``saved`` is ``saved_params[i]``): each parameter keeps its state, each
    group gets the saved hyperparameters and keeps its own other keys (e.g. ``"table"``)."""
    index_of = {id(p): i for i, p in enumerate(saved_params)}
    hyper = {k: v for k, v in saved["param_groups"][0].items() if k != "params"}
    state, groups, index = {}, [], 0
    for group in optimizer.param_groups:
        indices = []
        for param in group["params"]:
            old = index_of[id(param)]
            if old in saved["state"]:
                state[index] = saved["state"][old]
            indices.append(index)
            index += 1
        groups.append({**{k: v for k, v in group.items() if k != "params"}, **hyper, "params": indices})
    return {"state": state, "param_groups": groups}


def _check_old_grids(saved: Dict[str, Any], params: List[nn.Parameter]) -> None:
    groups = saved.get("param_groups", [])
    found = [len(g.get("params", [])) for g in groups]
    shapes_match = all(
        tuple(saved["state"][i]["exp_avg"].shape) == tuple(params[i].shape)
        for i in range(len(params))
        if i in saved.get("state", {}) and "exp_avg" in saved["state"][i]
    )
    if found != [len(params)] or not shapes_match:
        raise CheckpointError(
            f"the checkpoint's 'grids' optimizer state holds parameter groups of {found} parameters, neither this "
            f"version's layout nor the one before the 'latents' group existed (one group of {len(params)}: each "
            "table's latents and decoder); it cannot be resumed. Train from scratch, or export or evaluate it as it "
            "is (ns-compress export / ns-eval need no optimizer state)"
        )


class GridOptimizers(Optimizers):
    """nerfstudio's Optimizers that also load checkpoints from before the ``latents`` group.

    Args:
        config: the trainer's optimizer settings.
        param_groups: the pipeline's parameter groups.
        model: the GridNerfactoModel they belong to.
    """

    def __init__(self, config: Dict[str, Any], param_groups: Dict[str, List[nn.Parameter]], model) -> None:
        super().__init__(config, param_groups)
        self.model = model
        self._migrated_from_grids = False

    def load_optimizers(self, loaded_state: Dict[str, Any]) -> None:
        """Loads a checkpoint's optimizer states, splitting an old ``grids`` state first.

        Raises:
            CheckpointError: if an old-style ``grids`` state does not match the model.
        """
        if "latents" in self.optimizers and "latents" not in loaded_state and "grids" in loaded_state:
            params = _old_grids_parameters(self.model)
            _check_old_grids(loaded_state["grids"], params)
            loaded_state = dict(loaded_state)
            saved = loaded_state.pop("grids")
            for name in ("grids", "latents"):
                loaded_state[name] = _regroup(saved, params, self.optimizers[name])
            self._migrated_from_grids = True
        super().load_optimizers(loaded_state)

    def load_schedulers(self, loaded_state: Dict[str, Any]) -> None:
        """Loads a checkpoint's scheduler states; after :meth:`load_optimizers` migrated an old
        checkpoint, the ``latents`` scheduler continues from the saved ``grids`` scheduler's step."""
        if self._migrated_from_grids and "latents" in self.schedulers and "grids" in loaded_state:
            latents = copy.deepcopy(self.schedulers["latents"].state_dict())
            for key in ("last_epoch", "_step_count"):
                if key in loaded_state["grids"]:
                    latents[key] = loaded_state["grids"][key]
            loaded_state = {**loaded_state, "latents": latents}
        super().load_schedulers(loaded_state)


RUN_LENGTH = 0
"""A scheduler ``max_steps`` that means: the run's ``max_num_iterations`` (SHACIRA's ``latents``
decay, so that a shorter or longer run keeps the whole schedule; any other value is kept)."""


def run_optimizer_settings(config: TrainerConfig) -> Dict[str, Any]:
    """A copy of ``config.optimizers`` (for nerfstudio's ``Optimizers``) in which every scheduler
    whose ``max_steps`` is :data:`RUN_LENGTH` spans the run's ``config.max_num_iterations`` steps;
    the other groups are the same objects."""
    optimizers = dict(config.optimizers)
    for name, group in optimizers.items():
        scheduler = group.get("scheduler")
        if scheduler is not None and getattr(scheduler, "max_steps", None) == RUN_LENGTH:
            scheduler = copy.deepcopy(scheduler)
            scheduler.max_steps = config.max_num_iterations
            optimizers[name] = {**group, "scheduler": scheduler}
    return optimizers


class GridTrainer(Trainer):
    """nerfstudio's Trainer with :class:`GridOptimizers`; a scheduler with ``max_steps``
    :data:`RUN_LENGTH` spans the run's ``max_num_iterations``."""

    def setup_optimizers(self) -> Optimizers:
        return GridOptimizers(
            run_optimizer_settings(self.config), self.pipeline.get_param_groups(), self.pipeline.model
        )


@dataclass
class GridTrainerConfig(TrainerConfig):
    """TrainerConfig whose trainer resumes checkpoints of earlier optimizer layouts (:class:`GridTrainer`)."""

    _target: Type = field(default_factory=lambda: GridTrainer)
