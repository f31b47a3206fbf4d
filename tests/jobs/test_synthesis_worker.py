"""The synthesis job's checkpoint: finished chunks survive a worker killed mid-write (the line
it was writing is dropped, the ones before kept) and a resume on another machine (through the
artifact store), and how a pair is shown in the live view."""

from __future__ import annotations

import json
from pathlib import Path

from tuneforge.data.documents import Chunk
from tuneforge.jobs.workers.synthesis import (
    Checkpoint,
    Finished,
    _finished_in,
    sample,
    source_of,
)
from tuneforge.storage import ArtifactStore


def test_checkpoint_keeps_whole_lines_and_drops_a_torn_one(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "job" / "chunks.jsonl")
    assert checkpoint.read() == {}
    first = Finished("c1", [{"question": "Why?", "answer": "Because."}], {"too_short": 1}, 10, 4)
    checkpoint.append(first)
    checkpoint.append(Finished("c2", [], {"ungrounded": 2}, 8, 3))
    whole = checkpoint.path.stat().st_size
    with checkpoint.path.open("ab") as file:  # a worker killed while writing the third
        file.write(json.dumps({"chunk_id": "c3", "rows": []}).encode()[:15])
    done = checkpoint.read()
    assert list(done) == ["c1", "c2"] and done["c1"] == first
    assert checkpoint.path.stat().st_size == whole  # cut back, so the next append is whole
    checkpoint.append(Finished("c3", [], {}, 1, 1))
    assert list(Checkpoint(checkpoint.path).read()) == ["c1", "c2", "c3"]


def test_a_line_that_is_not_a_chunk_ends_the_reading(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "chunks.jsonl")
    checkpoint.append(Finished("c1", [], {}, 0, 0))
    with checkpoint.path.open("ab") as file:
        file.write(b'{"unexpected": true}\n')
    assert list(checkpoint.read()) == ["c1"]


def test_a_sample_names_its_chunk() -> None:
    chunk = Chunk("id", "manual.pdf", 6, (3, 4), ("Setup", "Linux"), "text", 12)
    assert source_of(chunk) == "manual.pdf, pages 3-4, Setup > Linux, chunk 7"
    row = {
        "question": "How is it installed?",
        "answer": "With the installer.",
        "document": "manual.pdf",
        "pages": [3, 4],
        "section": "Setup > Linux",
        "chunk_id": "id",
        "chunk_index": 6,
        "task": "qa",
    }
    assert sample(row, chunk) == {
        "prompt": "How is it installed?",
        "answer": "With the installer.",
        "source": "manual.pdf, pages 3-4, Setup > Linux, chunk 7",
    }
    single = Chunk("id", "notes.md", 0, (), (), "text", 3)
    assert source_of(single) == "notes.md, chunk 1"


def test_a_checkpoint_in_the_store_is_read_on_another_machine(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path / 'store'}")
    key = "owner/dataset_synthesis/job/chunks.jsonl"
    first = Checkpoint(tmp_path / "machine-a" / "chunks.jsonl", store, key)
    first.append(Finished("c1", [], {}, 1, 1))
    first.sync()  # not yet: at most every SYNC_SECONDS
    assert not store.exists(key)
    first.append(Finished("c2", [], {}, 1, 1))
    first.sync(force=True)
    # Resumed on another machine: no file there, the store's copy is read.
    second = Checkpoint(tmp_path / "machine-b" / "chunks.jsonl", store, key)
    assert list(second.read()) == ["c1", "c2"]
    second.append(Finished("c3", [], {}, 1, 1))
    second.sync(force=True)
    # Back on the first machine: its own file and what the other one finished, merged.
    again = Checkpoint(first.path, store, key)
    assert sorted(again.read()) == ["c1", "c2", "c3"]
    assert sorted(_finished_in(first.path, cut=False)) == ["c1", "c2", "c3"]
    again.discard()
    assert not store.exists(key) and not first.path.exists()
