"""A LoRA fine-tune of tiny-random-gemma3 to chat with, made without a training run: PEFT's
random initialisation (both LoRA matrices non-zero) so it answers differently from its base."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

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
