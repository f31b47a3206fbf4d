"""The `evaluate` kind: one or two models answer samples of a processed dataset's split, scored
by a suite (reward graders for `rewards`; no answers for `perplexity` and `preference`) and
optionally graded by a judge model; the metrics table is the result."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from tuneforge.db.tables import Dataset, User
from tuneforge.errors import InvalidInput
from tuneforge.evaluation.samples import TEXT_ONLY
from tuneforge.evaluation.sight import image_count, refuse_text_only
from tuneforge.evaluation.spec import EvaluationSpec
from tuneforge.jobs.endpoints import check_judges
from tuneforge.jobs.inputs import ChatModel, processed_dataset, usable_model
from tuneforge.jobs.kind import JobKind, register
from tuneforge.models.catalog import load_catalog
from tuneforge.settings import Settings
from tuneforge.training.rewards.spec import ANSWER_COLUMN


class EvaluatedModel(BaseModel):
    id: str = Field(description="A catalog id or the id of a fine-tuned model.")
    name: str = Field(description="The model's name.")
    base: str | None = Field(
        default=None,
        description="The catalog model it was fine-tuned from; null for a catalog model.",
    )


class EvaluationScores(BaseModel):
    """What an evaluation found, as its results page and the API show it."""

    suite: str = Field(description="How the answers were scored.")
    models: list[EvaluatedModel] = Field(description="The models: A, then B when compared.")
    metrics: list[dict[str, float]] = Field(
        description="Each model's metrics, in the order of `models` (fractions in 0..1, except "
        "`perplexity`, `nll`, `margin`, the log-probabilities and `reward`, which runs to the "
        "sum of the graders' weights); empty for the vibe suite."
    )
    difference: dict[str, float] | None = Field(
        description="B - A for each metric, when two models were evaluated (the pages show "
        "fine-tune vs base instead: see `comparison`)."
    )
    right: list[int] | None = Field(
        default=None,
        description="How many answers of each model count as right, in the order of `models`: "
        "`correct` where the suite has it (classification, extraction, json), else a score of "
        "at least 0.5 (for rewards: at least half the highest reward); null for the vibe and "
        "perplexity suites.",
    )
    details: list[dict[str, Any]] = Field(
        description="Each model's details: the confusion matrix and per-class precision, "
        "recall, F1 and support (classification), sacrebleu's signatures (translation), ..."
    )
    count: int = Field(description="How many samples were evaluated.")
    skipped: int = Field(
        description="Rows of the split the suite could not use (no prompt or reference; for "
        "perplexity and preference, rows with images)."
    )
    judge_error: str | None = Field(
        default=None,
        description="Why the judge could not grade the answers (the metrics and samples are "
        "then kept without its grades); null without a judge or when it graded them.",
    )
    engine: str | None = Field(
        default=None,
        description="The engine that made the answers: `llama.cpp` (it serves every model "
        "evaluated, LoRA fine-tunes through their checked fast path) or `transformers`.",
    )
    engine_note: str | None = Field(
        default=None,
        description="Why the answers are not llama.cpp's: a fine-tune whose fast path is off, "
        "and why.",
    )


class EvaluateResult(EvaluationScores):
    samples_key: str = Field(description="Where the per-sample rows are stored (JSON lines).")
    csv_key: str = Field(description="Where the per-sample rows are stored (CSV).")


def evaluation_dataset(session: Session, user: User, spec: EvaluationSpec) -> Dataset:
    """The dataset the samples come from: the user's own, processed, ready, with the split,
    holding what the suite needs (pairs for `preference`, the graders' columns for `rewards`,
    tools for `tool_calls`)."""
    dataset = processed_dataset(session, user, spec.dataset_id, "evaluate", spec.split)
    if dataset.format == "text" and spec.suite != "perplexity":
        raise InvalidInput(
            f"The dataset {dataset.name!r} is plain text, with no prompts to answer: only the "
            "perplexity suite applies to it."
        )
    mode = _mode(dataset)
    if spec.suite == "preference" and mode != "preference":
        raise InvalidInput(
            f"The preference suite compares a chosen and a rejected answer; {dataset.name!r} "
            f"holds {mode} rows. Choose a dataset processed in mode preference.",
            {"fields": ["suite", "dataset_id"]},
        )
    if spec.suite == "tool_calls" and not _declares_tools(dataset):
        raise InvalidInput(
            f"The tool_calls suite scores calls of the tools a conversation declares; "
            f"{dataset.name!r} has no tools. Choose a conversation dataset processed with a "
            "tools column.",
            {"fields": ["suite", "dataset_id"]},
        )
    if spec.graders is not None:
        _check_columns(dataset, spec)
    return dataset


def _declares_tools(dataset: Dataset) -> bool:
    """Whether the dataset's rows may declare tools: a conversation dataset mapped with a tools
    column (or stored with one)."""
    mapping = (dataset.config or {}).get("mapping") or {}
    stored = any(column.get("name") == "tools" for column in dataset.columns or [])
    return _mode(dataset) == "conversation" and (bool(mapping.get("tools_column")) or stored)


def _mode(dataset: Dataset) -> str:
    """How the dataset was processed (`data/mapping.py`): conversation before modes existed."""
    return str(((dataset.config or {}).get("mapping") or {}).get("mode", "conversation"))


def _check_columns(dataset: Dataset, spec: EvaluationSpec) -> None:
    """Refuse graders that read a column the dataset does not have (a conversation's last
    answer is the column `answer`)."""
    columns = {str(column["name"]) for column in dataset.columns or []}
    if _mode(dataset) == "conversation":
        columns.add(ANSWER_COLUMN)
    for number, grader in enumerate(spec.graders or []):
        for column in sorted(grader.columns() - columns):
            raise InvalidInput(
                f"The grader {grader.name!r} reads the column {column!r}, which {dataset.name!r} "
                f"does not have (its columns: {', '.join(sorted(columns))}).",
                {"fields": [f"graders.{number}.column"]},
            )


def evaluation_models(
    session: Session, user: User, settings: Settings, spec: EvaluationSpec
) -> list[ChatModel]:
    """The models that answer: A, then B when compared (catalog models or the user's own)."""
    return [usable_model(session, user, settings, model_id) for model_id in spec.model_ids]


class EvaluateKind(JobKind[EvaluationSpec, EvaluateResult]):
    name = "evaluate"
    description = "Scores one or two models on a dataset split."
    worker = "tuneforge.jobs.workers.evaluate:run"
    spec = EvaluationSpec
    result = EvaluateResult

    def check(self, session: Session, user: User, settings: Settings, spec: EvaluationSpec) -> None:
        """Refuse an evaluation whose dataset or models the user cannot use, a text-only model
        on a dataset with images (unless the suite reads texts only), or judges (its own, its
        judge graders) the user may not call or whose key secrets are not set."""
        dataset = evaluation_dataset(session, user, spec)
        models = evaluation_models(session, user, settings, spec)
        if image_count(dataset.stats) and spec.suite not in TEXT_ONLY:
            catalog = load_catalog(settings.catalog_file)
            refuse_text_only([m.name for m in models], [catalog.get(m.ref.base) for m in models])
        check_judges(spec.judges(), user, settings, session)


register(EvaluateKind())
