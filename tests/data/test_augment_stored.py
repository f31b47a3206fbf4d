"""A stored processed dataset augmented into a new one: the train split is the source's rows
then their variants with lineage, every other split is the source's file byte for byte, and the
statistics count the new rows."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tuneforge.data import parquet
from tuneforge.data.augment.spec import AugmentSpec
from tuneforge.data.augment.stored import augment_stored
from tuneforge.errors import InvalidInput
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

SOURCE, TARGET = "u/datasets/source", "u/datasets/target"
CONFIG = {"mapping": {"mode": "conversation"}, "label_column": None}


def _row(i: int) -> dict:
    return {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"Tell me a fact about river number {i} please."}
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": f"River {i} is long."}]},
        ]
    }


@pytest.fixture
def store(library_settings: Settings) -> ArtifactStore:
    store = ArtifactStore(library_settings.resolved_storage_url)
    for split, rows in (("train", range(10)), ("test", range(10, 13))):
        table = pa.Table.from_pylist([_row(i) for i in rows])
        parquet.write_split(store, parquet.split_key(SOURCE, "processed", split), table)
    return store


def test_train_is_augmented_and_test_is_copied_byte_for_byte(
    store: ArtifactStore, library_settings: Settings
) -> None:
    spec = AugmentSpec.model_validate(
        {"methods": [{"name": "swap"}, {"name": "delete"}], "copies": 2, "seed": 3}
    )
    seen: list[float] = []
    fields = augment_stored(
        store,
        library_settings,
        (SOURCE, {"train": 10, "test": 3}, CONFIG),
        TARGET,
        spec,
        seen.append,
    )
    test_key = parquet.split_key(SOURCE, "processed", "test")
    assert store.read_bytes(parquet.split_key(TARGET, "processed", "test")) == store.read_bytes(
        test_key
    )
    train = parquet.read_split(store, parquet.split_key(TARGET, "processed", "train")).to_pylist()
    assert fields["splits"] == {"train": len(train), "test": 3} and 10 < len(train) <= 30
    assert [r["messages"] for r in train[:10]] == [_row(i)["messages"] for i in range(10)]
    assert all(r["augmented_from"] is None for r in train[:10])
    for variant in train[10:]:
        assert variant["augmentation"] in {"swap", "delete"}
        assert variant["messages"][1] == _row(variant["augmented_from"])["messages"][1]
        assert variant["messages"][0] != _row(variant["augmented_from"])["messages"][0]
    assert fields["stats"]["rows"] == {"train": len(train), "test": 3}
    assert {c["name"] for c in fields["columns"]} == {"messages", "augmented_from", "augmentation"}
    assert seen[-1] == 1.0 and seen == sorted(seen)
    # Seeded: again, the same file.
    again = augment_stored(
        store,
        library_settings,
        (SOURCE, {"train": 10, "test": 3}, CONFIG),
        "u/datasets/again",
        spec,
    )
    assert (
        parquet.read_split(
            store, parquet.split_key("u/datasets/again", "processed", "train")
        ).to_pylist()
        == train
    )
    assert again["stats"] == fields["stats"]


def test_a_dataset_without_a_train_split_is_refused(
    store: ArtifactStore, library_settings: Settings
) -> None:
    spec = AugmentSpec.model_validate({"methods": [{"name": "swap"}]})
    with pytest.raises(InvalidInput, match="no train split"):
        augment_stored(store, library_settings, (SOURCE, {"test": 3}, CONFIG), TARGET, spec)


def test_training_reads_augmented_rows_and_ignores_their_lineage(
    store: ArtifactStore, library_settings: Settings
) -> None:
    from tuneforge.data.stored import processed_records
    from tuneforge.models.tokenizer import gemma_tokenizer
    from tuneforge.training.components.tokenize import encode_record

    spec = AugmentSpec.model_validate({"methods": [{"name": "swap"}], "seed": 1})
    fields = augment_stored(
        store, library_settings, (SOURCE, {"train": 10, "test": 3}, CONFIG), TARGET, spec
    )
    train = processed_records(store, TARGET, fields["splits"], "train")  # as the train job reads
    tokenizer = gemma_tokenizer(library_settings.models_dir)
    variant = train[-1]
    assert variant["augmented_from"] is not None
    example = encode_record(variant, tokenizer, 256, assistant_only=True)
    bare = {k: v for k, v in variant.items() if k not in ("augmented_from", "augmentation")}
    assert example is not None and example == encode_record(
        bare, tokenizer, 256, assistant_only=True
    )
