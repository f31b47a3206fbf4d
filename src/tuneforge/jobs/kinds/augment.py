"""The `dataset_augment` kind: makes an augmented dataset from a processed one (its train split
augmented, its test split copied). The augmentation service queues it; the new dataset is
`processing` until the job ends, and `failed` with the job's reason when the job fails or is
cancelled."""

from __future__ import annotations

from tuneforge.jobs.kind import register
from tuneforge.jobs.kinds.dataset import _DatasetKind


class DatasetAugmentKind(_DatasetKind):
    name = "dataset_augment"
    description = "Augments a processed dataset's train split into a new dataset."
    worker = "tuneforge.jobs.workers.augment:run"


register(DatasetAugmentKind())
