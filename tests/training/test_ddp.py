"""Data-parallel training: two gloo processes on this CPU train exactly as one process with the
doubled batch, a checkpoint resumes with either number of processes, a rank that dies stops the
run with the reason; and the `devices` setting and the rank contract refuse what cannot work."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from tests.training.conftest import Recorder, conversations
from tuneforge.errors import InvalidInput
from tuneforge.training.parallel.launcher import launch
from tuneforge.training.parallel.ranks import Rank, strategy, world_size
from tuneforge.training.parallel.sharding import shard_model
from tuneforge.training.recipe import Checkpoints
from tuneforge.training.recipes.grpo import GRPOSpec
from tuneforge.training.run_checks import devices_findings
from tuneforge.training.schedule import Plan
from tuneforge.training.spec import DPOSpec, SFTSpec

EXACT = {"precision": "fp32", "warmup_ratio": 0.0}


def spec(**values: Any) -> SFTSpec:
    base: dict[str, Any] = {
        "base_model": "tiny-random-gemma3",
        "dataset_id": "d",
        "learning_rate": 1e-2,
        "lora_r": 8,
        "lora_alpha": 16,
        "max_steps": 4,
        "checkpoint_every": 2,
        "sample_max_new_tokens": 4,
        **EXACT,
    }
    return SFTSpec(**(base | values))


def adapter(output: Path) -> dict[str, torch.Tensor]:
    return load_file(str(output / "adapter_model.safetensors"))


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_two_processes_train_as_one_with_the_doubled_batch_and_resume_in_either_layout(
    tiny_model: Path, tmp_path: Path
) -> None:
    data = conversations(12)
    # 10 examples: each epoch's third micro-batch has 2 (in two processes, rank 1 gets none).
    train, test = data[:10], data[10:]
    one, two = Recorder(), Recorder()
    single = launch(spec(batch_size=4), tiny_model, train, test, one, tmp_path / "one")
    double = launch(spec(batch_size=2, devices=2), tiny_model, train, test, two, tmp_path / "two")
    expected = one.series("loss")
    assert len(expected) == 4 and expected[-1] < expected[0]  # it learns: the curve is no line
    assert two.series("loss") == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert two.series("grad_norm") == pytest.approx(one.series("grad_norm"), rel=1e-3)
    assert two.points["tokens_per_second"].keys() == {1, 2, 3, 4}  # rank 0 reports each once
    assert list(two.points["eval_loss"]) == [4]  # rank 0 evaluates, at the end
    assert two.points["eval_loss"][4] == pytest.approx(one.points["eval_loss"][4], rel=1e-4)
    assert any("training in 2 processes" in line for line in two.logs)
    assert single.steps == double.steps == 4
    weights = adapter(single.output)
    for name, tensor in adapter(double.output).items():
        torch.testing.assert_close(tensor, weights[name], rtol=1e-4, atol=1e-5)

    # Each run kept its checkpoint of step 2 (the same files): resume each in the other layout.
    from_one, from_two = Recorder(), Recorder()
    resumed_in_two = launch(
        spec(batch_size=2, devices=2),
        tiny_model,
        train,
        test,
        from_one,
        tmp_path / "one-then-two",
        Checkpoints(latest=tmp_path / "one" / "checkpoints" / "latest"),
    )
    resumed_in_one = launch(
        spec(batch_size=4),
        tiny_model,
        train,
        test,
        from_two,
        tmp_path / "two-then-one",
        Checkpoints(latest=tmp_path / "two" / "checkpoints" / "latest"),
    )
    for resumed in (from_one, from_two):
        assert sorted(resumed.points["loss"]) == [3, 4]  # steps continue from the checkpoint
        assert resumed.series("loss") == pytest.approx(expected[2:], rel=1e-4, abs=1e-5)
    assert any("resumed from step 2 of 4" in line for line in from_one.logs)
    for outcome in (resumed_in_two, resumed_in_one):
        for name, tensor in adapter(outcome.output).items():
            torch.testing.assert_close(tensor, weights[name], rtol=1e-4, atol=1e-5)


class KillsRank(Recorder):
    """Kills the process of rank 1 (SIGKILL) when step 1 is reported."""

    def metrics(self, values: dict[str, float], step: int) -> None:
        super().metrics(values, step)
        if step == 1:
            for process in multiprocessing.active_children():
                if process.name == "tuneforge-rank-1" and process.pid is not None:
                    os.kill(process.pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_dead_rank_stops_every_rank_with_the_reason(tiny_model: Path, tmp_path: Path) -> None:
    train = conversations(8)
    recorder = KillsRank()
    with pytest.raises(
        RuntimeError, match=r"process 1 of 2 ended unexpectedly \(killed by signal 9"
    ):
        launch(
            spec(batch_size=2, devices=2, max_steps=50), tiny_model, train, [], recorder, tmp_path
        )
    assert 1 <= recorder.last_step < 50  # it trained, and stopped at once
    assert not multiprocessing.active_children()  # rank 0 was stopped too


def test_devices_accepts_a_count_or_auto_and_nothing_else() -> None:
    assert spec().devices == 1
    assert spec(devices="auto").devices == "auto"
    assert spec(devices=2).devices == 2
    for wrong in (0, 65, "2", "all", True, 2.5):
        with pytest.raises(ValidationError):
            spec(devices=wrong)
    description = SFTSpec.model_json_schema()["properties"]["devices"]["description"]
    assert "no faster" in description and "auto" in description


def test_world_size_follows_the_gpus_and_refuses_what_cannot_run() -> None:
    assert world_size(spec(), 0) == 1
    assert world_size(spec(devices="auto"), 0) == 1  # a CPU trains in one process
    assert world_size(spec(devices="auto"), 4) == 4
    assert world_size(spec(devices=2), 0) == 2  # gloo processes on a CPU
    assert world_size(spec(devices=2), 2) == 2
    with pytest.raises(InvalidInput, match="this machine has 2 GPUs") as more:
        world_size(spec(devices=3), 2)
    assert more.value.details == {"fields": ["devices"]}
    with pytest.raises(InvalidInput, match="FSDP, which needs CUDA GPUs"):
        world_size(spec(devices=2, method="full"), 0)
    assert world_size(spec(devices=2, method="full"), 2) == 2
    grpo = GRPOSpec(
        base_model="tiny-random-gemma3",
        dataset_id="d",
        devices=2,
        graders=[{"type": "regex", "name": "format", "pattern": "<answer>"}],
    )
    with pytest.raises(InvalidInput, match="grpo trainer trains in one process") as one:
        world_size(grpo, 0)
    assert "several devices work with dpo, kto, orpo and sft" in str(one.value)
    (refusal,) = devices_findings(grpo)  # refused at launch too
    assert refusal.fields == ("devices",) and refusal.severity == "refusal"
    assert devices_findings(spec(devices=2)) == []
    assert world_size(grpo.model_copy(update={"devices": "auto"}), 4) == 1
    dpo = DPOSpec(base_model="tiny-random-gemma3", dataset_id="d", devices=2)
    assert world_size(dpo, 0) == 2 and devices_findings(dpo) == []
    assert strategy(spec(devices=2, method="full"), 2, cuda=True) == "fsdp"
    assert strategy(spec(devices=2), 2, cuda=True) == "ddp"
    assert strategy(spec(devices=2), 2, cuda=False) == "ddp"
    assert strategy(spec(), 1, cuda=True) == "single"
    with pytest.raises(InvalidInput, match="FSDP"):
        strategy(spec(devices=2, method="full"), 2, cuda=False)
    with pytest.raises(InvalidInput, match="FSDP shards a full fine-tune over CUDA GPUs"):
        shard_model(torch.nn.Linear(2, 2), "cpu")


def test_the_rank_contract_is_read_from_the_environment() -> None:
    env = {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }
    rank = Rank.from_env(env)
    assert rank == Rank(1, 2, 1, "127.0.0.1", 29500) and rank.env() == env
    with pytest.raises(InvalidInput, match="MASTER_PORT is not set"):
        Rank.from_env({k: v for k, v in env.items() if k != "MASTER_PORT"})
    with pytest.raises(InvalidInput, match="from 0 to WORLD_SIZE - 1"):
        Rank.from_env(env | {"RANK": "2"})
    with pytest.raises(InvalidInput, match="not a whole number"):
        Rank.from_env(env | {"WORLD_SIZE": "two"})


def test_the_ranks_shares_make_up_the_doubled_batch() -> None:
    one = Plan(spec(batch_size=4, max_steps=None, epochs=2, gradient_accumulation=2), 10)
    two = Plan(spec(batch_size=2, max_steps=None, epochs=2, gradient_accumulation=2), 10, 2)
    assert two.total_steps == one.total_steps == 3
    for step in range(1, 4):
        for whole, shared in zip(one.step_batches(step), two.step_batches(step), strict=True):
            assert whole == shared
            assert two.share(shared, 0) + two.share(shared, 1) == whole
            assert len(two.share(shared, 0)) <= 2
    assert two.epoch_at(3) == one.epoch_at(3)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_train_job_with_two_devices_reports_once_and_cancels_after_a_stored_checkpoint(
    make_client: Any, settings: Any
) -> None:
    from tests.api.test_jobs_api import wait_status
    from tests.api.test_training_api import log_lines, processed_dataset, start_and_reach
    from tests.conftest import add_user, bearer
    from tuneforge.storage import ArtifactStore, artifact_prefix

    client = make_client(auth="local", run_jobs=True, cancel_timeout=60)
    alice = bearer(add_user(settings, "alice"))
    dataset = processed_dataset(client, alice, rows=16)
    run = {
        "base_model": "tiny-random-gemma3",
        "dataset_id": dataset["id"],
        "devices": 2,
        "batch_size": 2,
        "max_steps": 200,
        "check_examples": 0,
    }
    refused = client.post(
        "/api/v1/jobs", json={"kind": "train", "spec": run | {"devices": "2"}}, headers=alice
    )
    assert refused.status_code == 422  # a count is a number, as every integer of the API
    job_id = start_and_reach(client, alice, run, step=2)
    client.post(f"/api/v1/jobs/{job_id}/cancel", headers=alice)
    cancelled = wait_status(client, job_id, alice, "cancelled", timeout=60)
    loss = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()["series"]["loss"]
    steps = [step for step, _ in loss]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < 200  # rank 0's, once each
    assert f"cancelled at step {steps[-1]}" in str(cancelled["error"])
    assert any("training in 2 processes" in line for line in log_lines(client, job_id, alice))
    store = ArtifactStore(settings.resolved_storage_url)
    prefix = artifact_prefix(cancelled["owner_id"], "train", job_id)
    assert store.is_complete(f"{prefix}/checkpoints/step-{steps[-1]:08d}")
