"""The `dataset_synthesis` kind: makes a raw dataset of question/answer pairs (or instructions,
summaries, reasoning) that a model writes from uploaded documents. The synthesis service queues
it with the documents stored beside the new dataset; the dataset is `processing` until the job
ends, and `failed` with the job's reason when the job fails or is cancelled. A failed or
cancelled job can be resumed: the chunks it finished are not generated again."""

from __future__ import annotations

from pydantic import Field

from tuneforge.jobs.kind import register
from tuneforge.jobs.kinds.dataset import DatasetResult, _DatasetKind


class SynthesisResult(DatasetResult):
    chunks: int = Field(description="Chunks of the documents that were generated from.")
    kept: int = Field(description="Pairs kept in the dataset.")
    dropped: dict[str, int] = Field(
        default_factory=dict, description="Pairs (or chunks) dropped, by reason."
    )
    prompt_tokens: int = Field(default=0, description="Tokens sent to the model.")
    completion_tokens: int = Field(default=0, description="Tokens the model wrote.")


class DatasetSynthesisKind(_DatasetKind):
    name = "dataset_synthesis"
    description = "Makes a raw dataset from documents with a model writing examples per chunk."
    worker = "tuneforge.jobs.workers.synthesis:run"
    result = SynthesisResult


register(DatasetSynthesisKind())
