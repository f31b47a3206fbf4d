"""Fine-tunes of tiny-random-gemma3 to chat with: a LoRA adapter made without a training run
(PEFT's random initialisation, both LoRA matrices non-zero, so it answers differently from its
base), and a full fine-tune that learnt one tool-calling conversation (it calls the tool)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from sqlalchemy import select

from tuneforge.data.conversation import message
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Model, User
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from tuneforge.models.loading import load_causal_lm, load_tokenizer

    base_dir = tiny_model
    torch.manual_seed(7)
    base = load_causal_lm(base_dir, torch.float32)
    config = LoraConfig(r=8, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    tuned = get_peft_model(base, config)
    out = tmp_path_factory.mktemp("adapter")
    tuned.save_pretrained(out)
    load_tokenizer(base_dir).save_pretrained(out)
    return out


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather now in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
QUESTION = "Weather in Oslo?"
ANSWER = "It is cold in Oslo."


def _record() -> dict[str, Any]:
    call = {
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    return {
        "messages": [
            message("user", QUESTION),
            {"role": "assistant", "content": [], "tool_calls": [call]},
            {"role": "tool", "name": "get_weather", "content": [{"type": "text", "text": "cold"}]},
            message("assistant", ANSWER),
        ],
        "tools": json.dumps(TOOLS),
    }


@pytest.fixture(scope="session")
def tool_calling_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Full fine-tuning of the tiny model on one tool-calling conversation (it learns it),
    trained once for all the test processes of a run."""
    from tests.training.conftest import Recorder
    from tuneforge.training.recipes.sft import train_sft
    from tuneforge.training.spec import SFTSpec

    # Under pytest-xdist every process has a base temp of its own, in a directory they share.
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    made = shared / "tool-model"
    with FileLock(shared / "tool-model.lock"):
        if (made / "done").exists():
            return Path((made / "done").read_text())
        spec = SFTSpec(
            base_model="tiny-random-gemma3",
            dataset_id="d",
            method="full",
            learning_rate=3e-3,
            batch_size=1,
            max_steps=60,
            eval_every=0,
        )
        recorder = Recorder()
        outcome = train_sft(spec, tiny_model, [_record()], [], recorder, made)
        losses = recorder.series("loss")
        assert outcome.steps == 60 and losses[-1] < 0.1 * losses[0]
        (made / "done").write_text(str(outcome.output))
        return outcome.output


def add_fine_tuned(
    settings: Settings,
    username: str,
    adapter: Path,
    name: str = "tuned",
    base_model: str = "tiny-random-gemma3",
    kind: str = "adapter",
) -> str:
    """Store `adapter` (or, with `kind` `full`, whole weights) as a fine-tuned model of
    `username`'s (of `base_model`); its id."""
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        user = session.scalars(select(User).where(User.username == username)).one()
        key = f"{user.id}/train/fixture-{name}/model"
        ArtifactStore(settings.resolved_storage_url).put_dir(key, adapter)
        model = Model(
            owner_id=user.id,
            name=name,
            base_model=base_model,
            kind=kind,
            spec={},
            metrics={},
            artifact_key=key,
            files=sorted(p.name for p in adapter.iterdir()),
            size_bytes=sum(p.stat().st_size for p in adapter.iterdir()),
        )
        session.add(model)
        session.flush()
        return model.id
