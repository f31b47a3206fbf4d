"""What turns data into a dataset: an import request and the processing config (stored with
the datasets they make; the API takes them as they are)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from tuneforge.data.mapping import MappingSpec
from tuneforge.data.splits import SplitSpec
from tuneforge.strict_numbers import Integer


class DatasetImport(BaseModel):
    """Bring in a Hugging Face dataset (by id, or a dataset directory on the server)."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["huggingface", "server_path"] = Field(
        description=(
            "`huggingface`: a dataset id on the Hub, e.g. `tatsu-lab/alpaca` (administrators "
            "may also give a dataset directory on the server); `server_path`: a data file on "
            "the server (administrators only)."
        )
    )
    path: str = Field(min_length=1, max_length=1000, description="The dataset id or the path.")
    subset: str | None = Field(
        default=None, max_length=200, description="The configuration (subset) to load, if any."
    )
    split: str | None = Field(
        default=None, max_length=200, description="Only this split (default: all of them)."
    )
    revision: str | None = Field(
        default=None, max_length=200, description="A branch, tag or commit of the dataset."
    )
    name: str | None = Field(default=None, max_length=200, description="A name for it.")


class ProcessingConfig(BaseModel):
    """Everything that turns a raw dataset into training data; stored with the result."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200, description="The new dataset's name.")
    mapping: MappingSpec = Field(description="How rows become conversations.")
    split: SplitSpec = Field(default_factory=SplitSpec, description="How to split train/test.")
    max_length: Integer = Field(
        default=2048,
        ge=16,
        le=131_072,
        description="Longest example in Gemma tokens; longer ones are reported (and dropped).",
    )
    on_problem: Literal["drop", "fail"] = Field(
        default="drop",
        description="`drop`: leave out rows with problems and report them; `fail`: refuse.",
    )
    drop_duplicates: StrictBool = Field(
        default=False,
        description="Leave out rows that repeat an earlier one (exactly, or but for case and "
        "spaces). Repeats are kept by default and counted in the report; a repeated example "
        "always lands in one split, so none is both trained on and tested.",
    )
    label_column: str | None = Field(
        default=None, description="A label column to chart the label distribution of."
    )
