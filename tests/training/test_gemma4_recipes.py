"""The tiny random Gemma 4 trains through the SFT and DPO recipes in Gemma 4's chat format: the
loss falls, the examples are the prompts inference sends (with Gemma 4's generation prompt)
followed by the answers, and the saved fine-tune carries Gemma 4's template."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.conftest import Recorder, conversations, preferences
from tuneforge.models.catalog import catalog
from tuneforge.models.chat_template import GEMMA_4
from tuneforge.training.recipes.dpo import train_dpo
from tuneforge.training.recipes.sft import train_sft
from tuneforge.training.spec import DPOSpec, SFTSpec

pytestmark = pytest.mark.timeout(300)
SETTINGS = {
    "base_model": "tiny-random-gemma4",
    "dataset_id": "d",
    "learning_rate": 1e-2,
    "batch_size": 4,
    "lora_r": 8,
    "lora_alpha": 16,
    "precision": "fp32",
    "warmup_ratio": 0.0,
}


@pytest.fixture(scope="module")
def gemma4_model(models_dir: Path) -> Path:
    from tuneforge.models.loading import model_dir

    entry = catalog().get("tiny-random-gemma4")
    assert entry is not None and entry.chat_format == "gemma-4"
    return model_dir(entry, models_dir)


def test_sft_learns_gemma4_answers(gemma4_model: Path, tmp_path: Path) -> None:
    data = conversations(8)
    recorder = Recorder()
    spec = SFTSpec(**SETTINGS, max_steps=30, eval_every=30)
    outcome = train_sft(spec, gemma4_model, data, data[:4], recorder, tmp_path)
    losses = recorder.series("loss")
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert not any("chat template" in line.lower() for line in recorder.logs)
    assert (
        recorder.sample_sets and recorder.sample_sets[-1][1][0]["reference"] == "Number 0 is red."
    )
    template = (outcome.output / "chat_template.jinja").read_text(encoding="utf-8")
    assert template == GEMMA_4.jinja


def test_dpo_learns_gemma4_preferences(gemma4_model: Path, tmp_path: Path) -> None:
    data = preferences(8)
    recorder = Recorder()
    spec = DPOSpec(**SETTINGS, max_steps=20, eval_every=20)
    outcome = train_dpo(spec, gemma4_model, data, data[:4], recorder, tmp_path)
    losses = recorder.series("loss")
    assert len(losses) == 20
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    template = (outcome.output / "chat_template.jinja").read_text(encoding="utf-8")
    assert template == GEMMA_4.jinja
