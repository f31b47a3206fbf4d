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


def _message(role: str, text: str) -> dict:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _write(store: ArtifactStore, prefix: str, splits: dict[str, list[dict]]) -> dict[str, int]:
    for split, rows in splits.items():
        parquet.write_split(
            store, parquet.split_key(prefix, "processed", split), pa.Table.from_pylist(rows)
        )
    return {split: len(rows) for split, rows in splits.items()}


def test_preference_pairs_keep_their_answers_and_get_pair_statistics(
    library_settings: Settings,
) -> None:
    store = ArtifactStore(library_settings.resolved_storage_url)
    rows = [
        {
            "prompt": [
                _message("user", f"Please write a friendly greeting for visitor number {i} today.")
            ],
            "chosen": [_message("assistant", f"Welcome, visitor {i}!")],
            "rejected": [_message("assistant", "Go away.")],
        }
        for i in range(6)
    ]
    splits = _write(store, "u/datasets/pairs", {"train": rows[:4], "test": rows[4:]})
    config = {"mapping": {"mode": "preference"}}
    spec = AugmentSpec.model_validate({"methods": [{"name": "delete", "rate": 0.3}], "copies": 2})
    fields = augment_stored(
        store, library_settings, ("u/datasets/pairs", splits, config), TARGET, spec
    )
    train = parquet.read_split(store, parquet.split_key(TARGET, "processed", "train")).to_pylist()
    assert len(train) > 4
    for variant in train[4:]:
        source = rows[variant["augmented_from"]]
        assert variant["prompt"] != source["prompt"]
        assert (variant["chosen"], variant["rejected"]) == (source["chosen"], source["rejected"])
    assert set(fields["stats"]["pairs"]) == {"train", "test"}
    assert fields["stats"]["pairs"]["train"]["chosen_tokens"]["count"] == len(train)


def test_plain_text_is_rewritten_as_an_answer(library_settings: Settings) -> None:
    store = ArtifactStore(library_settings.resolved_storage_url)
    rows = [
        {"text": f"The old lighthouse keeper walked slowly along the rocky shore {i}."}
        for i in range(5)
    ]
    splits = _write(store, "u/datasets/text", {"train": rows})
    config = {"mapping": {"mode": "language_modeling"}}
    spec = AugmentSpec.model_validate({"methods": [{"name": "swap"}], "rewrite": "answers"})
    fields = augment_stored(
        store, library_settings, ("u/datasets/text", splits, config), TARGET, spec
    )
    train = parquet.read_split(store, parquet.split_key(TARGET, "processed", "train")).to_pylist()
    assert fields["splits"] == {"train": 10}
    assert all(v["text"] != rows[v["augmented_from"]]["text"] for v in train[5:])
    assert sorted(train[5]["text"].rstrip(".").split()) == sorted(
        rows[0]["text"].rstrip(".").split()
    )


def test_image_rows_are_augmented_and_counted(
    library_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from PIL import Image

    from tuneforge.data.augment import stored

    monkeypatch.setattr(stored, "FLUSH_BYTES", 1)  # each row's variants written at once

    def picture(shade: int) -> bytes:
        image = Image.new("RGB", (40, 30), (shade, 255 - shade, 90))
        image.paste((255, 255, 255), (0, 0, 10, 30))  # a white band on the left: flips show
        out = io.BytesIO()
        image.save(out, "PNG")
        return out.getvalue()

    store = ArtifactStore(library_settings.resolved_storage_url)
    rows = [
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": "What colour?"}],
                },
                _message("assistant", f"Shade {i}."),
            ],
            "images": [picture(40 * i)],
        }
        for i in range(4)
    ]
    splits = _write(store, "u/datasets/pictures", {"train": rows[:3], "test": rows[3:]})
    spec = AugmentSpec.model_validate({"methods": [{"name": "flip"}], "copies": 1})
    fields = augment_stored(
        store, library_settings, ("u/datasets/pictures", splits, CONFIG), TARGET, spec
    )
    train = parquet.read_split(store, parquet.split_key(TARGET, "processed", "train")).to_pylist()
    assert fields["splits"] == {"train": 6, "test": 1}
    stored = parquet.read_split(
        store, parquet.split_key("u/datasets/pictures", "processed", "train")
    )
    for variant in train[3:]:
        source = stored.to_pylist()[variant["augmented_from"]]  # as Parquet gives it back
        assert variant["messages"] == source["messages"] and variant["images"] != source["images"]
        with Image.open(io.BytesIO(variant["images"][0])) as flipped:
            assert flipped.size == (40, 30) and flipped.getpixel((39, 0)) == (255, 255, 255)
    assert fields["stats"]["images"]["total"] == 7


def test_a_cancelled_augmentation_publishes_no_train_split(
    store: ArtifactStore, library_settings: Settings
) -> None:
    from tuneforge.errors import JobCancelled

    def cancel(done: float) -> None:
        raise JobCancelled("cancelled on request")

    spec = AugmentSpec.model_validate({"methods": [{"name": "swap"}]})
    with pytest.raises(JobCancelled):
        augment_stored(
            store,
            library_settings,
            (SOURCE, {"train": 10, "test": 3}, CONFIG),
            TARGET,
            spec,
            cancel,
        )
    assert store.list(TARGET) == []


def test_tool_calling_rows_keep_their_calls_and_tools(library_settings: Settings) -> None:
    store = ArtifactStore(library_settings.resolved_storage_url)
    tools = '[{"type": "function", "function": {"name": "weather", "parameters": {}}}]'
    call = {"type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    rows = [
        {
            "messages": [
                _message("user", f"What is the weather like in Oslo this morning, day {i}?"),
                {"role": "assistant", "content": [], "tool_calls": [call]},
                {"role": "tool", "name": "weather", "content": [{"type": "text", "text": "cold"}]},
                _message("assistant", "It is cold in Oslo."),
            ],
            "tools": tools,
        }
        for i in range(4)
    ]
    splits = _write(store, "u/datasets/tools", {"train": rows})
    spec = AugmentSpec.model_validate({"methods": [{"name": "swap"}], "rewrite": "both"})
    augment_stored(store, library_settings, ("u/datasets/tools", splits, CONFIG), TARGET, spec)
    train = parquet.read_split(store, parquet.split_key(TARGET, "processed", "train")).to_pylist()
    source = parquet.read_split(store, parquet.split_key("u/datasets/tools", "processed", "train"))
    assert len(train) == 8
    for variant in train[4:]:
        original = source.to_pylist()[variant["augmented_from"]]
        assert variant["tools"] == tools
        assert variant["messages"][1:3] == original["messages"][1:3]  # the call and its result
        assert variant["messages"][0] != original["messages"][0]
        assert variant["messages"][3] != original["messages"][3]  # answers too, when asked


def test_prompt_only_references_leave_out_tools_and_lineage(library_settings: Settings) -> None:
    store = ArtifactStore(library_settings.resolved_storage_url)
    rows = [
        {
            "prompt": [_message("user", f"Add {i} and {i} together, then explain the sum.")],
            "answer": str(2 * i),
            "tools": "[]",
        }
        for i in range(3)
    ]
    splits = _write(store, "u/datasets/prompts", {"train": rows})
    config = {"mapping": {"mode": "prompt_only"}}
    spec = AugmentSpec.model_validate({"methods": [{"name": "delete"}]})
    fields = augment_stored(
        store, library_settings, ("u/datasets/prompts", splits, config), TARGET, spec
    )
    assert fields["stats"]["reference_columns"] == ["answer"]
