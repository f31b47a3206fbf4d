"""A run that continues an earlier fine-tune (`start_from`) through the API, on tiny-random-gemma3:
it really continues (its first loss is the earlier model's, not the base's), the model it makes
is a normal PEFT adapter on the base that names its lineage, and the launch check refuses a model
that is not the user's, of another base, or of a kind or shape the run cannot continue. Below the
API, `prepare_model` trains on from an adapter's or full model's weights, and a continued
adapter's reference is the adapter it started from."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from sqlalchemy import update

from tests.api.test_jobs_api import wait_status
from tests.api.test_training_api import processed_dataset, spec
from tests.conftest import add_user, bearer
from tests.fine_tuned import add_fine_tuned
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Model
from tuneforge.models.catalog import catalog
from tuneforge.storage import ArtifactStore
from tuneforge.training.spec import SFTSpec


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local", run_jobs=True)
    return client, bearer(add_user(settings, "alice")), bearer(add_user(settings, "bob"))


def _train(client, headers, values: dict[str, object]) -> dict:
    job = client.post("/api/v1/jobs", json={"kind": "train", "spec": values}, headers=headers)
    assert job.status_code == 201, job.text
    return wait_status(client, job.json()["id"], headers, "succeeded", timeout=900)


def _first_loss(client, headers, job_id: str) -> float:
    metrics = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=headers).json()
    step, loss = metrics["series"]["loss"][0]
    assert step == 1
    return float(loss)


def _refusal(client, headers, values: dict[str, object]) -> tuple[int, dict]:
    answer = client.post("/api/v1/jobs", json={"kind": "train", "spec": values}, headers=headers)
    return answer.status_code, answer.json()["error"]


def _preference_dataset(client, headers) -> str:
    rows = [
        {"prompt": f"Which colour is {i}?", "chosen": f"Number {i} is blue.", "rejected": "?"}
        for i in range(16)
    ]
    body = "\n".join(json.dumps(row) for row in rows).encode()
    raw = client.post(
        "/api/v1/datasets", files={"file": ("pairs.jsonl", io.BytesIO(body))}, headers=headers
    ).json()
    assert raw["mapping"]["mode"] == "preference", raw
    config = {"mapping": raw["mapping"], "split": {"test_size": 0.25, "seed": 1}}
    processed = client.post(f"/api/v1/datasets/{raw['id']}/process", json=config, headers=headers)
    assert processed.status_code == 201, processed.text
    return str(processed.json()["id"])


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(directory / "adapter_model.safetensors")


@pytest.mark.trains
@pytest.mark.timeout(1800)  # five tiny runs; minutes on a busy 2-core machine
def test_a_run_continues_an_earlier_fine_tune(api, settings) -> None:
    client, alice, _ = api
    dataset = processed_dataset(client, alice)
    first = _train(client, alice, spec(dataset["id"], eval_every=0))
    sft_id = first["result"]["model_id"]
    short = spec(dataset["id"], max_steps=2, eval_every=0)
    fresh = _train(client, alice, short)
    continued = _train(client, alice, {**short, "start_from": sft_id})
    # It continued: its first loss is nearer where the earlier run ended than a fresh start's.
    fresh_loss = _first_loss(client, alice, fresh["id"])
    continued_loss = _first_loss(client, alice, continued["id"])
    ended = first["result"]["metrics"]["loss"]
    assert ended < fresh_loss - 1  # the earlier run learned (about 13.7 -> 10.9 here)
    assert continued_loss < (ended + fresh_loss) / 2, (continued_loss, ended, fresh_loss)
    model = client.get(f"/api/v1/models/{continued['result']['model_id']}", headers=alice).json()
    assert model["started_from"] == sft_id and model["spec"]["start_from"] == sft_id
    earlier = client.get(f"/api/v1/models/{sft_id}", headers=alice).json()
    assert earlier["started_from"] is None
    assert "reference" not in {name.split("/")[0] for name in model["files"]}
    # A normal PEFT adapter on the base, with the earlier adapter's weights trained further.
    from peft import PeftModel

    from tuneforge.models.loading import load_causal_lm, model_dir

    store = ArtifactStore(settings.resolved_storage_url)
    local, before = Path(settings.data_dir) / "continued", Path(settings.data_dir) / "sft"
    store.get_dir(model["artifact_key"], local)
    store.get_dir(earlier["artifact_key"], before)
    entry = catalog().get("tiny-random-gemma3")
    base = load_causal_lm(model_dir(entry, settings.models_dir), torch.float32)
    tuned = PeftModel.from_pretrained(base, local)
    assert tuned.peft_config["default"].base_model_name_or_path == "tiny-random-gemma3"
    assert tuned(torch.tensor([[2, 105, 2364, 107]])).logits.shape[-1] == 262144
    after, start = _weights(local), _weights(before)
    assert after.keys() == start.keys()
    assert all(not torch.equal(after[name], start[name]) for name in after)
    # SFT, then DPO from its model: the DPO adapter is the SFT adapter moved a little (a fresh
    # LoRA would start from zero), and it still loads in PEFT.
    pairs = _preference_dataset(client, alice)
    dpo = _train(
        client,
        alice,
        {**spec(pairs, max_steps=2, eval_every=0), "trainer": "dpo", "start_from": sft_id},
    )
    preferred = client.get(f"/api/v1/models/{dpo['result']['model_id']}", headers=alice).json()
    assert preferred["started_from"] == sft_id and preferred["spec"]["trainer"] == "dpo"
    store.get_dir(preferred["artifact_key"], Path(settings.data_dir) / "dpo")
    moved = _weights(Path(settings.data_dir) / "dpo")
    distance = sum(float((moved[n] - start[n]).pow(2).sum()) for n in start) ** 0.5
    size = sum(float(start[n].pow(2).sum()) for n in start) ** 0.5
    assert 0 < distance < 0.1 * size, (distance, size)
    tuned.load_adapter(Path(settings.data_dir) / "dpo", adapter_name="dpo")


def test_start_from_is_refused_unless_it_can_continue(api, settings, tiny_adapter) -> None:
    client, alice, bob = api
    dataset = processed_dataset(client, alice)
    values = spec(dataset["id"])
    # Another user's model answers exactly like a missing one.
    foreign = add_fine_tuned(settings, "bob", tiny_adapter, name="bobs")
    for missing in (foreign, "nope"):
        status, error = _refusal(client, alice, {**values, "start_from": missing})
        assert status == 404 and error["code"] == "not_found"
        assert error["message"] == (
            f"No model {missing!r} to start from: use the id of one of your fine-tuned models."
        )
        assert error["details"]["fields"] == ["start_from"]
    # Another base model: the message says which.
    own = add_fine_tuned(settings, "alice", tiny_adapter, name="mine")
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        session.execute(update(Model).where(Model.id == own).values(base_model="gemma-3-270m"))
    status, error = _refusal(client, alice, {**values, "start_from": own})
    assert status == 422 and error["details"]["fields"] == ["base_model", "start_from"]
    assert "fine-tuned from gemma-3-270m" in error["message"]
    assert "set base_model to gemma-3-270m" in error["message"]
    with transaction(factory) as session:
        session.execute(
            update(Model)
            .where(Model.id == own)
            .values(base_model="tiny-random-gemma3", spec={"lora_r": 8, "lora_alpha": 64})
        )
    # An adapter continues with LoRA, keeping its shape.
    status, error = _refusal(client, alice, {**values, "start_from": own, "method": "full"})
    assert status == 422 and error["details"]["fields"] == ["method", "start_from"]
    assert "is a LoRA adapter: continue it with method lora" in error["message"]
    status, error = _refusal(client, alice, {**values, "start_from": own})
    assert status == 422 and error["details"]["fields"] == ["lora_r", "lora_alpha"]
    assert "set lora_r 8, lora_alpha 64" in error["message"]
    # The estimate says the same beside the fields, before a launch.
    checks = client.post(
        "/api/v1/trainings/estimate", json={**values, "start_from": own}, headers=alice
    ).json()["checks"]
    assert {"fields": ["lora_r", "lora_alpha"], "severity": "refusal"}.items() <= checks[0].items()
    # Full weights continue only with a full run.
    with transaction(factory) as session:
        session.execute(update(Model).where(Model.id == own).values(kind="full"))
    status, error = _refusal(client, alice, {**values, "start_from": own})
    assert status == 422 and "holds full weights: continue it with method full" in error["message"]
    status, _ = _refusal(client, bob, {**values, "start_from": own})
    assert status == 404


# -- below the API: what `prepare_model` makes of the model a run continues ----------------------
def _spec(**values: object) -> SFTSpec:
    base = {"base_model": "tiny-random-gemma3", "dataset_id": "d", "precision": "fp32"}
    return SFTSpec.model_validate({**base, "start_from": "m", **values})


def test_prepare_model_continues_an_adapter_and_keeps_its_start_as_reference(
    tiny_model: Path, tiny_adapter: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from tuneforge.errors import InvalidInput
    from tuneforge.training.runtime import (
        name_base,
        prepare_model,
        reference_of,
        runtime_for,
        trainable_parameters,
    )

    start = tmp_path / "start"
    shutil.copytree(tiny_adapter, start)
    name_base(start, tiny_model)
    spec = _spec(lora_r=8, lora_alpha=64)
    model = prepare_model(spec, start, runtime_for(spec), reference=True)
    saved = load_file(start / "adapter_model.safetensors")
    trained = dict(trainable_parameters(model))
    assert len(trained) == len(saved) and all(".default." in name for name in trained)
    assert all(p.dtype == torch.float32 for p in trained.values())
    for name, weight in saved.items():  # the adapter's weights, not a fresh initialisation
        assert torch.equal(trained[name.replace(".weight", ".default.weight")], weight)
    ids = torch.tensor([[2, 105, 2364, 107]])
    with torch.no_grad():
        before = model(ids).logits
        for name, parameter in trained.items():
            if "lora_B" in name:
                parameter.add_(0.5)  # as if it had trained
        moved = model(ids).logits
    with reference_of(model):
        reference = model(ids).logits
    assert not torch.allclose(moved, before)
    assert torch.allclose(reference, before), "the reference is the adapter it started from"
    assert all(p.requires_grad for p in trained.values()), "training goes on after it"
    assert dict(trainable_parameters(model)).keys() == trained.keys()
    # Its shape is the adapter's: a spec that says otherwise is refused, naming the fields.
    with pytest.raises(InvalidInput) as refused:
        prepare_model(_spec(), start, runtime_for(_spec()))
    assert refused.value.details["fields"] == ["lora_r", "lora_alpha"]
    assert "set lora_r 8, lora_alpha 64" in refused.value.message
    with pytest.raises(InvalidInput, match="continue it with method lora"):
        prepare_model(_spec(method="full"), start, runtime_for(_spec(method="full")))


def test_prepare_model_continues_full_weights(tiny_model: Path, tmp_path: Path) -> None:
    from tuneforge.models.loading import load_causal_lm
    from tuneforge.training.runtime import prepare_model, runtime_for

    earlier = load_causal_lm(tiny_model, torch.float32)
    name, weight = next(iter(earlier.named_parameters()))
    with torch.no_grad():
        weight.add_(1.0)  # a fine-tune's weights, unlike the base's
    earlier.save_pretrained(tmp_path / "full")
    spec = _spec(method="full")
    model = prepare_model(spec, tmp_path / "full", runtime_for(spec))
    continued = dict(model.named_parameters())
    assert torch.equal(continued[name], weight)
    assert all(p.requires_grad and p.dtype == torch.float32 for p in continued.values())
