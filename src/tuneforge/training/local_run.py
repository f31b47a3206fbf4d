"""`tuneforge train config.yaml`: the same recipe, headless, on a local data file, no server.

The config is a training spec in YAML (a preset is a good start; its `trainer` chooses the
recipe) plus `data:`, a file in any format the studio recognises (its columns are mapped
automatically, as on upload). Rows are processed exactly as the studio processes them
(validated, deduplicated, split), the run writes its checkpoints, TensorBoard logs and the model
under the output directory, and Ctrl-C stops it after a checkpoint; running the same command
again resumes from there.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import yaml

from tuneforge.data.config import ProcessingConfig
from tuneforge.data.formats import guess_mapping
from tuneforge.data.process import process, records, split_records
from tuneforge.data.readers import read_table
from tuneforge.errors import InvalidInput
from tuneforge.models.loading import resolve
from tuneforge.models.tokenizer import count_tokens, gemma_tokenizer
from tuneforge.settings import Settings
from tuneforge.training.parallel.launcher import launch
from tuneforge.training.recipe import Checkpoints, Outcome
from tuneforge.training.registry import spec_adapter
from tuneforge.training.reporting import ConsoleReporter, Tracked
from tuneforge.training.spec import TrainingBase
from tuneforge.yaml_numbers import safe_load

LOCAL_DATASET = "local"


def read_config(path: Path) -> tuple[TrainingBase, Path]:
    """The spec and the data file named by a YAML config (relative paths: from the config)."""
    try:
        values: Any = safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"Cannot read {path}: {exc}") from exc
    if not isinstance(values, dict) or "data" not in values:
        raise InvalidInput(f"{path} must be a mapping with `data:` (the training data file).")
    data = Path(str(values.pop("data")))
    values.setdefault("dataset_id", LOCAL_DATASET)
    spec = spec_adapter().validate_python(values)
    if spec.start_from is not None:
        raise InvalidInput(
            "start_from continues a model stored on a TuneForge server; a local run has none "
            "to continue: launch it with `tuneforge runs start` on the server instead."
        )
    return spec, data if data.is_absolute() else path.parent / data


def local_records(
    path: Path, settings: Settings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The train and test records of a local file, processed as the studio would."""
    result = read_table(path, path.name)
    table = result.table
    guess = guess_mapping(table.column_names, records(table.slice(0, 50)))
    if guess.mapping is None or not guess.sure:
        raise InvalidInput(
            f"Could not recognise the columns of {path.name} ({guess.reason}); upload it in the "
            "studio to map them by hand."
        )
    tokenizer = gemma_tokenizer(settings.models_dir)
    processed = process(
        {"train": table},
        ProcessingConfig(mapping=guess.mapping),
        lambda texts: count_tokens(texts, tokenizer),
        result.images.get if result.images is not None else None,
    )
    if result.images is not None:
        result.images.close()
    split = {name: split_records(t) for name, t in processed.splits.items()}
    return split.get("train", []), split.get("test", [])


def run_local(config: Path, output: Path, settings: Settings) -> Outcome:
    spec, data = read_config(config)
    reporter = ConsoleReporter()
    reporter.log(f"reading {data}")
    train, test = local_records(data, settings)
    reporter.log(f"preparing {spec.base_model}")
    _, model_path = resolve(spec.base_model, settings)
    latest = output / "checkpoints" / "latest"
    tracked = Tracked(reporter, spec, output / "tensorboard", spec.name or config.stem)

    def stop(signum: int, frame: object) -> None:
        reporter.stop = True
        reporter.log("stopping after this step (a checkpoint is saved; run again to resume)")

    previous = signal.signal(signal.SIGINT, stop)
    try:
        return launch(  # in `devices` processes when there are several
            spec,
            model_path,
            train,
            test,
            tracked,
            output,
            Checkpoints(latest=latest if latest.is_dir() else None),
        )
    finally:
        signal.signal(signal.SIGINT, previous)
        tracked.close()
