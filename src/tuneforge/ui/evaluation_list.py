"""The list of evaluations: the models compared and the dataset by name, ids as secondary text."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tuneforge.db.tables import Job, User
from tuneforge.services import jobs as job_service
from tuneforge.services.names import Names, dataset_title, names_for_jobs
from tuneforge.ui.formatting import duration, status_color, when
from tuneforge.ui.job_names import compared

COLUMNS = [
    {"name": "models", "label": "Models", "field": "models", "align": "left"},
    {"name": "dataset", "label": "Dataset", "field": "dataset", "align": "left"},
    {"name": "suite", "label": "Suite", "field": "suite", "align": "left"},
    {"name": "status", "label": "Status", "field": "status", "align": "left"},
    {"name": "created", "label": "Started", "field": "created", "align": "left"},
    {"name": "duration", "label": "Took", "field": "duration", "align": "left"},
]
SLOTS = {
    "body-cell-models": """
        <q-td :props="props">
          <a :href="'/evaluations/' + props.row.id" @click.stop
             class="text-primary text-weight-medium tf-wrap evaluation-models"
             style="text-decoration: none">{{ props.value }}</a>
          <div class="text-caption text-grey-6">{{ props.row.id.slice(0, 8) }}</div>
        </q-td>""",
    "body-cell-dataset": """
        <q-td :props="props"><span class="tf-wrap">{{ props.value }}</span></q-td>""",
    "body-cell-status": r"""
        <q-td :props="props">
          <q-badge :color="props.row.color" :label="props.row.status" />
          <q-linear-progress v-if="props.row.status === 'running'" :value="props.row.progress"
            class="q-mt-xs" style="width: 6rem" />
        </q-td>""",
}


def evaluation_rows(session: Session, user: User, limit: int) -> list[dict[str, Any]]:
    """The newest evaluations as table rows."""
    jobs, _ = job_service.list_jobs(session, user, kind="evaluate", limit=limit)
    names = names_for_jobs(session, user, jobs)
    return [_row(job, names) for job in jobs]


def _row(job: Job, names: Names) -> dict[str, Any]:
    return {
        "id": job.id,
        "models": compared(job.spec, names),
        "dataset": f"{dataset_title(job.spec, names)} ({job.spec.get('split', 'test')})",
        "suite": job.spec.get("suite", "")
        + (" · automatic check" if job.spec.get("automatic") else ""),  # a run's before/after
        "status": job.status,
        "color": status_color(job.status),
        "progress": job.progress,
        "created": when(job.created_at),
        "duration": duration(job),
    }
