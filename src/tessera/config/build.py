"""From a validated `RunConfig` to a ready `Trainer`: build the components the recipe names,
then pass them and the settings to the trainer's keywords. Nothing else happens here: the
trainer owns the process group, the run folder, checkpoints and resume in every mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from tessera.config.schema import RunConfig
from tessera.core.files import atomic_write_text, writing
from tessera.core.model import TrainableModel
from tessera.core.world import current_world
from tessera.data.registry import DATASETS, DataContext, DataLoaders
from tessera.trainer import Trainer, TrainerSettings
from tessera.trainer.run_folder import RunFolder


def build_model(config: RunConfig) -> TrainableModel:
    torch.manual_seed(config.seed)  # model initialisation is seeded too
    from tessera.models.registry import MODELS

    return MODELS.build(config.model.name, config.model)


def build_data(
    config: RunConfig,
    rank: int | None = None,
    world_size: int | None = None,
    model: TrainableModel | None = None,
) -> DataLoaders:
    """The data for this process (`rank`/`world_size` override the detected ones, for tests);
    `model` is handed to data that takes its tokenizer or chat template from the model."""
    position = current_world(rank, world_size)
    context = DataContext(
        seed=config.seed, rank=position.rank, world_size=position.size, model=model
    )
    return DATASETS.build(config.data.name, config.data, context=context)


def settings_of(config: RunConfig) -> dict[str, Any]:
    """The trainer keywords a recipe's top-level fields give."""
    return {name: getattr(config, name) for name in TrainerSettings.model_fields}


def build_trainer(
    config: RunConfig, rank: int | None = None, world_size: int | None = None
) -> Trainer:
    """Every component the run file names, and the Trainer that runs them."""
    from tessera.algorithms.registry import ALGORITHMS
    from tessera.callbacks.registry import CALLBACKS
    from tessera.core.engine import check_conflicts
    from tessera.loggers.registry import LOGGERS

    model = build_model(config)
    data = build_data(config, rank, world_size, model)
    if data.inputs:
        model.inputs = data.inputs  # into final/config.json (TrainableModel.exported_config)
    algorithms = [ALGORITHMS.get(n).from_config(c) for n, c in config.algorithms.items()]
    check_conflicts(algorithms)
    folder = RunFolder(_run_root(config)) if config.run_dir is not None else None
    trainer = Trainer(
        model,
        data.train,
        eval_data=data.eval,
        optimizers=config.optimizer,
        schedulers=config.scheduler if config.scheduler is not None else [],
        algorithms=algorithms,
        callbacks=[CALLBACKS.get(n).from_config(c) for n, c in config.callbacks.items()],
        loggers=[
            LOGGERS.get(n).from_config(c, run_dir=folder.root if folder else None)
            for n, c in config.loggers.items()
        ],
        **settings_of(config),
    )
    if config.run_dir is not None and current_world().rank == 0:
        write_resolved_config(config)  # after a resume that fits: a refused one leaves it as it was
    trainer.logger.log_hyperparameters(config.model_dump(mode="json"))
    return trainer


def _run_root(config: RunConfig) -> Path:
    return Path(config.run_dir).expanduser().absolute() / config.name  # type: ignore[arg-type]


def write_resolved_config(config: RunConfig) -> None:
    """The run folder's config.yaml: the recipe with every default filled in."""
    folder = RunFolder(_run_root(config)).create()
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    with writing("the resolved config", folder.config):
        atomic_write_text(folder.config, text)


def locate_trained(path: Path) -> tuple[Path, Path]:
    """(the run's config.yaml, the weights file) of a run folder, a final/ folder or a .pt."""
    from tessera.core.errors import CheckpointError

    if path.is_dir() and (path / "final" / "model.safetensors").exists():
        return path / "config.yaml", path / "final" / "model.safetensors"
    if path.is_dir() and (path / "model.safetensors").exists():
        return path.parent / "config.yaml", path / "model.safetensors"
    if path.is_file():
        return path.parent.parent / "config.yaml", path
    raise CheckpointError(
        f"{path} is not a run folder with a final model, a final/ model folder or a checkpoint file"
    )


def build_trained_model(
    path: Path, recipe: Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[RunConfig, TrainableModel, Path]:
    """The model a run trained, rebuilt from its recipe (the run's config.yaml unless given)
    with the weights of its final model or of a checkpoint; (config, model, weights file)."""
    from tessera.config import load_config
    from tessera.core.checkpointer import read_checkpoint
    from tessera.core.errors import ConfigError
    from tessera.core.export import load_network_weights, read_model_file
    from tessera.core.state import load_model_state

    run_config, weights = locate_trained(path)
    recipe = recipe or run_config
    if not recipe.is_file():
        raise ConfigError(
            f"no recipe found for {path} (looked at {recipe}); pass --recipe RECIPE.yaml"
        )
    config = load_config(recipe, list(overrides))
    model = build_model(config)
    if weights.suffix == ".safetensors":
        load_network_weights(model, read_model_file(weights), str(weights))
        return config, model, weights
    load_model_state(model, read_checkpoint(weights)["model"], str(weights))
    return config, model, weights
