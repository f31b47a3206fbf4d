"""The Python client's training methods against a real server process, for every trainer: a
DPO spec and a GRPO spec with graders are estimated and checked against the data they would learn
from (a refusal names its field), and the presets list per trainer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import add_user
from tests.server import running_server, server_env
from tuneforge.client import ApiError, Client
from tuneforge.settings import Settings

pytestmark = pytest.mark.surface

QUESTIONS = [(f"What is {i} plus {i}?", str(2 * i)) for i in range(12)]


@pytest.fixture
def server(make_settings: Callable[..., Settings]) -> Iterator[str]:
    settings = make_settings()
    add_user(settings, "ada")
    with running_server(server_env(settings)) as url:
        yield url


def _processed(tf: Client, path: Path, rows: list[dict[str, str]]) -> str:
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    raw = tf.upload_dataset(path)
    assert raw.mapping is not None, raw.warnings
    done = tf.wait_dataset(tf.process_dataset(raw.id, {"mapping": raw.mapping}).id, timeout=60)
    assert done.status == "ready"
    return done.id


@pytest.mark.timeout(300)
def test_every_trainer_through_the_client(server: str, tmp_path: Path) -> None:
    with Client.login(server, "ada", "password-ada") as tf:
        chats = _processed(
            tf, tmp_path / "sums.jsonl", [{"question": q, "answer": a} for q, a in QUESTIONS]
        )
        pairs = _processed(
            tf,
            tmp_path / "pairs.jsonl",
            [{"prompt": q, "chosen": a, "rejected": "I cannot count."} for q, a in QUESTIONS],
        )
        base = {"base_model": "tiny-random-gemma3", "epochs": 1, "check_examples": 0}
        dpo = {**base, "trainer": "dpo", "beta": 0.2}
        estimate = tf.estimate({**dpo, "dataset_id": pairs})
        assert estimate.estimate.fits and not estimate.checks
        # DPO on conversations: refused before anything is queued, naming the dataset.
        with pytest.raises(ApiError) as refused:
            tf.train({**dpo, "dataset_id": chats})
        assert refused.value.status == 422 and refused.value.details["fields"] == ["dataset_id"]
        assert refused.value.message.startswith("DPO learns from preference pairs (a prompt")
        assert "holds conversations" in refused.value.message
        assert "or choose " in refused.value.message and "SFT" in refused.value.message
        assert tf.list_jobs(kind="train").total == 0
        # GRPO with graders: a grader reading a column the data has not is refused by name.
        graders = [
            {"type": "numeric_match", "column": "answer"},
            {"type": "exact_match", "column": "label", "name": "label"},
        ]
        grpo = {**base, "trainer": "grpo", "graders": graders, "dataset_id": chats}
        with pytest.raises(ApiError) as missing:
            tf.train(grpo)
        assert missing.value.status == 422 and missing.value.details["fields"] == ["graders"]
        assert "'label'" in missing.value.message
        checks = tf.estimate(grpo).checks
        assert [(c.fields, c.severity) for c in checks] == [(["graders"], "refusal")]
        assert tf.estimate({**grpo, "graders": graders[:1]}).checks == []
        # Prompts with a reference answer are GRPO's; SFT says how to learn the answers instead.
        prompts = _processed(
            tf, tmp_path / "graded.jsonl", [{"prompt": q, "answer": a} for q, a in QUESTIONS]
        )
        assert tf.get_dataset(prompts).config["mapping"]["mode"] == "prompt_only"
        with pytest.raises(ApiError) as sft:
            tf.train({**base, "dataset_id": prompts})
        assert sft.value.status == 422 and sft.value.details["fields"] == ["dataset_id"]
        assert "holds prompts whose `answer` column GRPO grades against" in sft.value.message
        assert (
            "To learn the answers with SFT, process its raw dataset again with the mode set to "
            "conversation and `answer` as the answer (the Datasets page's mapping form), or "
            "choose GRPO."
        ) in sft.value.message
        # Presets and recommendations per trainer.
        every = tf.presets()
        assert {p["trainer"] for p in tf.presets("sft")} == {"sft"}
        assert len(tf.presets("sft")) < len(every) or {p["trainer"] for p in every} == {"sft"}
        assert tf.presets("nope") == []
        assert tf.recommendations(pairs, "tiny-random-gemma3", trainer="dpo")
