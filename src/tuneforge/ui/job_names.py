"""What a job is called in lists: the names of what it works on first (the run's or model's
name, the models compared, the dataset), its kind and short id as secondary text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneforge.db.tables import Job
from tuneforge.services.names import Names, dataset_title, run_title
from tuneforge.ui.formatting import kind_title

DELETED_MODEL = "(deleted model)"
KINDS = {
    "train": "Training run",
    "evaluate": "Evaluation",
    "export": "Export",
    "dataset_import": "Dataset import",
    "dataset_process": "Dataset processing",
}


@dataclass(frozen=True)
class JobName:
    title: str
    kind: str
    #: A fact or two (base model, dataset, format), shown under the title.
    facts: tuple[str, ...]
    job_id: str

    @property
    def detail(self) -> str:
        """The kind, the facts and the short id: the secondary text under the title."""
        return " · ".join([self.kind, *self.facts, self.job_id[:8]])

    @property
    def subtitle(self) -> str:
        """The kind, the facts and the whole id: a job page's subtitle."""
        return " · ".join([self.kind, *self.facts, f"job {self.job_id}"])


def model_name(model: str | None, names: Names) -> str:
    """A fine-tuned model's name, or a catalog id as it is (a deleted fine-tune's id is
    indistinguishable from an unknown catalog id, so it shows as its id)."""
    if not model:
        return DELETED_MODEL
    return names.models.get(model, model)


def compared(spec: dict[str, Any], names: Names) -> str:
    """The models of an evaluation: "A" or "A vs B"."""
    first = model_name(spec.get("model"), names)
    if spec.get("compare_with"):
        return f"{first} vs {model_name(spec['compare_with'], names)}"
    return first


def job_name(job: Job, names: Names) -> JobName:
    spec = job.spec
    kind = KINDS.get(job.kind, kind_title(job.kind))
    facts: list[str]
    if job.kind == "train":
        title = run_title(job, names)
        facts = [str(spec.get("base_model", "")), dataset_title(spec, names)]
        if title == " on ".join(facts):  # named after them already
            facts = []
    elif job.kind == "evaluate":
        title = compared(spec, names)
        facts = [str(spec.get("suite", "")), dataset_title(spec, names)]
    elif job.kind == "export":
        model_id = spec.get("model_id")
        title = names.models.get(model_id, DELETED_MODEL) if isinstance(model_id, str) else "—"
        facts = [" ".join(str(spec[k]) for k in ("format", "quantization") if spec.get(k))]
    elif "dataset_id" in spec:
        title = dataset_title(spec, names)
        facts = []
    else:
        title = kind_title(job.kind)
        facts = []
    return JobName(title, kind, tuple(f for f in facts if f), job.id)
