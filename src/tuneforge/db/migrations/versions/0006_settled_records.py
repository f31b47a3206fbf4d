"""settle records left unfinished by ended jobs

Datasets and exports now settle inside their job's transition; before, a read patched those
whose job had ended without finishing them (a lost worker, a cancel, a deleted job). Settle the
ones no read patched, once, so none stays `processing` or `running` for ever.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ENDED = ("failed", "cancelled")


def upgrade() -> None:
    jobs = sa.table("jobs", sa.column("id"), sa.column("status"), sa.column("error"))
    datasets = sa.table("datasets", sa.column("status"), sa.column("error"), sa.column("job_id"))
    exports = sa.table(
        "exports",
        sa.column("status"),
        sa.column("error"),
        sa.column("job_id"),
        sa.column("finished_at"),
    )
    job_of = sa.select(jobs.c.id).where(jobs.c.id == datasets.c.job_id)
    ended_error = sa.select(jobs.c.error).where(
        jobs.c.id == datasets.c.job_id, jobs.c.status.in_(ENDED)
    )
    op.execute(
        datasets.update()
        .where(
            datasets.c.status == "processing",
            datasets.c.job_id.is_not(None),
            sa.or_(~sa.exists(job_of), sa.exists(ended_error)),
        )
        .values(
            status="failed",
            error=sa.func.coalesce(ended_error.scalar_subquery(), "its job ended unfinished"),
        )
    )
    export_job = sa.select(jobs.c.id).where(jobs.c.id == exports.c.job_id)
    export_ended = sa.select(jobs.c.status).where(
        jobs.c.id == exports.c.job_id, jobs.c.status.in_(ENDED)
    )
    export_error = sa.select(jobs.c.error).where(jobs.c.id == exports.c.job_id)
    op.execute(
        exports.update()
        .where(
            exports.c.status.in_(("queued", "running")),
            sa.or_(~sa.exists(export_job), sa.exists(export_ended)),
        )
        .values(
            status=sa.func.coalesce(export_ended.scalar_subquery(), "failed"),
            error=sa.func.coalesce(export_error.scalar_subquery(), "Its export job was deleted."),
            finished_at=sa.func.current_timestamp(),
        )
    )


def downgrade() -> None:
    """Nothing to undo: the settled records are what reads used to show."""
