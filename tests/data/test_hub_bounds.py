"""A Hugging Face import is bounded: by the Hub's file sizes before anything is downloaded, and
by counting the bytes while it downloads (against a Hub on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import datasets.config
import pytest
from huggingface_hub import constants, hf_hub_download

from tests.hub_server import FakeHub
from tests.server import free_port
from tuneforge.data.config import DatasetImport
from tuneforge.data.hub import download_slack, load_tables
from tuneforge.data.hub_bounds import DownloadCap, DownloadTooLarge, hub_size
from tuneforge.data.limits import DataFileError, size_text

ROWS = b"".join(b'{"text": "row %d"}\n' % i for i in range(5000))
SMALL = b'{"text": "a"}\n'


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """The fake Hub as huggingface_hub's and the datasets library's endpoint (with a cache of
    this test's own), with a dataset of a large and a small subset."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", "")  # set below
    with FakeHub() as fake:
        monkeypatch.setattr(datasets.config, "HF_ENDPOINT", fake.url)
        fake.datasets["tester/rows"] = {
            "README.md": b"# rows\n" * 100,
            "big/train.jsonl": ROWS,
            "small/train.jsonl": SMALL,
        }
        # What HF_ENDPOINT sets when huggingface_hub is imported.
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)
        template = fake.url + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setenv("HF_TOKEN", fake.token)
        yield fake


def _request(subset: str | None = None, path: str = "tester/rows") -> DatasetImport:
    return DatasetImport(source="huggingface", path=path, subset=subset)


def test_the_hubs_metadata_gives_the_size_of_the_data_files(hub: FakeHub) -> None:
    assert hub_size(_request()) == len(ROWS) + len(SMALL)  # not the README
    assert hub_size(_request("small")) == len(SMALL)
    assert hub_size(_request("elsewhere")) == len(ROWS) + len(SMALL)
    assert hub_size(_request(path="tester/missing")) is None


def test_an_unreachable_hub_gives_no_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")
    assert hub_size(_request()) is None


def test_a_dataset_larger_than_the_budget_is_refused_before_downloading(
    hub: FakeHub, tmp_path: Path
) -> None:
    with pytest.raises(DataFileError) as refused:
        load_tables(_request(), tmp_path, max_bytes=50_000)
    message = str(refused.value)
    total = size_text(len(ROWS) + len(SMALL))
    assert f"'tester/rows' on the Hub takes {total}, more than the 48.8 KiB" in message
    assert "Choose a subset or a split" in message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "nothing was downloaded"


def _download(cache: Path) -> str:
    return hf_hub_download("tester/rows", "big/train.jsonl", repo_type="dataset", cache_dir=cache)


def test_a_download_without_a_length_stops_at_the_cap(hub: FakeHub, tmp_path: Path) -> None:
    hub.announce_length = False
    cap = DownloadCap(20_000)
    with cap.active(), pytest.raises(DownloadTooLarge, match="was stopped after"):
        _download(tmp_path)
    assert 20_000 < cap.received < len(ROWS), "stopped soon after the cap, not at the end"
    assert cap.exceeded is not None and "19.5 KiB this import may download" in cap.exceeded
    assert not list(tmp_path.rglob("train.jsonl")), "no file of it is kept"


def test_an_announced_length_past_the_cap_is_refused_before_its_body(
    hub: FakeHub, tmp_path: Path
) -> None:
    cap = DownloadCap(20_000)
    with cap.active(), pytest.raises(DownloadTooLarge, match="One of the dataset's files"):
        _download(tmp_path)
    assert cap.received < 1_000


def test_within_the_cap_a_download_completes_and_the_cap_ends_with_its_block(
    hub: FakeHub, tmp_path: Path
) -> None:
    hub.announce_length = False
    with DownloadCap(len(ROWS) + 10_000).active() as cap:
        assert Path(_download(tmp_path / "first")).read_bytes() == ROWS
    assert len(ROWS) <= cap.received <= len(ROWS) + 10_000
    with DownloadCap(1_000).active():
        pass
    assert Path(_download(tmp_path / "second")).read_bytes() == ROWS


def test_an_import_loads_within_its_bound_and_stops_past_it(hub: FakeHub, tmp_path: Path) -> None:
    """Through the datasets library, against a Hub that does not tell the files' sizes and
    streams them without a length: only counting the bytes bounds the import."""
    hub.tell_sizes = hub.announce_length = False
    hub.datasets["tester/one"] = {"train.jsonl": SMALL}
    hub.datasets["tester/big"] = {"train.jsonl": ROWS}
    tables = load_tables(_request(path="tester/one"), tmp_path / "loaded", max_bytes=len(ROWS))
    assert tables["train"].to_pylist() == [{"text": "a"}]
    with pytest.raises(DataFileError) as refused:
        load_tables(_request(path="tester/big"), tmp_path / "refused", max_bytes=20_000)
    assert "Downloading this dataset was stopped after" in str(refused.value)
    assert "past the 19.5 KiB this import may download" in str(refused.value)


def test_a_budget_larger_than_the_dataset_is_lowered_to_its_size_before_downloading(
    hub: FakeHub, tmp_path: Path
) -> None:
    """What the Hub's metadata says, with a margin, is all the download may take and all the
    import's reservation keeps; a Hub that does not tell sizes leaves the budget as it was."""
    hub.datasets["tester/one"] = {"train.jsonl": SMALL}
    heard: list[int] = []
    tables = load_tables(_request(path="tester/one"), tmp_path / "told", 2**30, heard.append)
    assert tables["train"].to_pylist() == [{"text": "a"}]
    assert heard == [len(SMALL) + download_slack(len(SMALL))]
    assert download_slack(len(SMALL)) == 8 * 2**20
    hub.tell_sizes = False
    load_tables(_request(path="tester/one"), tmp_path / "untold", 2**30, heard.append)
    assert len(heard) == 1
