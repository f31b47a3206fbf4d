"""The columns the grader form offers as references: an augmented dataset's lineage is not one."""

from __future__ import annotations

from tuneforge.data.augment.records import LINEAGE
from tuneforge.ui.graders import reference_columns


def test_lineage_columns_are_not_offered_as_references() -> None:
    columns = ["prompt", "answer", *LINEAGE]
    assert reference_columns(columns) == ["answer"]
