"""A corrupt newest checkpoint: resuming falls back to the one before it and says so.

Corrupt means a truncated tensor file, a missing trainer state or a state that is not JSON.
Reading a damaged checkpoint leaves the model as it was; the recipe's resume continues the
same trajectory from the older checkpoint; a training job resumed through the API reads its
checkpoints from the artifact store, logs why the newest was skipped and finishes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.api.test_jobs_api import wait_status
from tests.api.test_training_api import log_lines, processed_dataset, spec, start_and_reach
from tests.conftest import add_user, bearer
from tests.training.conftest import Recorder, conversations
from tests.training.test_recipe import EXACT
from tests.training.test_recipe import spec as sft_spec
from tuneforge.errors import InvalidInput, JobCancelled
from tuneforge.training.checkpoint import (
    STATE,
    WEIGHTS,
    LoopState,
    UnreadableCheckpoint,
    checkpoint_name,
    load_checkpoint,
    save_checkpoint,
)
from tuneforge.training.recipes.sft import Checkpoints, train_sft

FELL_BACK = "The newest checkpoint cannot be read"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGES = {
    "truncated weights": lambda ck: truncate(ck / WEIGHTS),
    "no trainer state": lambda ck: (ck / STATE).unlink(),
    "state is not JSON": lambda ck: (ck / STATE).write_text('{"loop": {"step": 3', "utf-8"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_an_unreadable_checkpoint_leaves_the_model_as_it_was(damage: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    checkpoint = save_checkpoint(tmp_path / "ck", model, optimizer, LoopState(step=3))
    assert load_checkpoint(checkpoint, model, optimizer)[0].step == 3  # readable before
    DAMAGES[damage](checkpoint)
    with torch.no_grad():
        model.weight.fill_(7.0)  # moved on since: a failed load must not undo this
    optimizer_state = optimizer.state_dict()["state"][0]["exp_avg"].clone()
    with pytest.raises(UnreadableCheckpoint):
        load_checkpoint(checkpoint, model, optimizer)
    assert torch.equal(model.weight, torch.full((4, 4), 7.0))
    assert torch.equal(optimizer.state_dict()["state"][0]["exp_avg"], optimizer_state)


@pytest.mark.slow
def test_resume_falls_back_to_the_previous_checkpoint_on_the_same_trajectory(
    tiny_model: Path, tmp_path: Path
) -> None:
    data = conversations(8)
    run = sft_spec(max_steps=8, batch_size=2, checkpoint_every=2, **EXACT)
    straight = Recorder()
    train_sft(run, tiny_model, data, [], straight, tmp_path / "straight")

    saved = tmp_path / "saved"

    def keep(path: Path, step: int) -> None:
        shutil.copytree(path, saved / checkpoint_name(step), dirs_exist_ok=True)

    stopped = Recorder(cancel_after=6)
    with pytest.raises(JobCancelled):
        train_sft(run, tiny_model, data, [], stopped, tmp_path / "first", Checkpoints(save=keep))
    newest, older = saved / checkpoint_name(6), [saved / checkpoint_name(s) for s in (4, 2)]
    truncate(newest / WEIGHTS)

    resumed = Recorder()
    checkpoints = Checkpoints(latest=newest, older=older)
    outcome = train_sft(run, tiny_model, data, [], resumed, tmp_path / "again", checkpoints)
    assert outcome.steps == 8
    skipped = [line for line in resumed.logs if line.startswith(FELL_BACK)]
    assert len(skipped) == 1 and "looking for an older one" in skipped[0]
    assert "resumed from step 4 of 8" in resumed.logs
    assert sorted(resumed.points["loss"]) == [5, 6, 7, 8]
    combined = stopped.series("loss")[:4] + resumed.series("loss")
    assert combined == pytest.approx(straight.series("loss"), rel=1e-5)


def test_no_readable_checkpoint_fails_saying_so(tiny_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / STATE).write_text("not json", "utf-8")
    run = sft_spec(max_steps=2, batch_size=2)
    with pytest.raises(InvalidInput, match="None of this run's 2 checkpoint"):
        train_sft(
            run,
            tiny_model,
            conversations(4),
            [],
            Recorder(),
            tmp_path / "work",
            Checkpoints(latest=broken, older=[broken]),
        )


@pytest.mark.trains
@pytest.mark.timeout(600)
def test_a_job_resumes_from_the_checkpoint_before_a_corrupt_newest(make_client, settings) -> None:
    client = make_client(auth="local", run_jobs=True, cancel_timeout=60)
    alice = bearer(add_user(settings, "alice"))
    dataset = processed_dataset(client, alice)
    run = spec(dataset["id"], max_steps=24, eval_every=0, checkpoint_every=2)
    job_id = start_and_reach(client, alice, run, step=5)
    client.post(f"/api/v1/jobs/{job_id}/cancel", headers=alice)
    wait_status(client, job_id, alice, "cancelled", timeout=120)
    stored = sorted(
        settings.data_dir.glob(f"artifacts/*/train/{job_id}/checkpoints/step-*/{WEIGHTS}")
    )
    assert len(stored) == 2  # the newest two are kept
    previous, newest = (int(p.parent.name.removeprefix("step-")) for p in stored)
    truncate(stored[-1])

    assert client.post(f"/api/v1/jobs/{job_id}/resume", headers=alice).status_code == 200
    done = wait_status(client, job_id, alice, "succeeded", timeout=300)
    assert done["result"]["steps"] == 24
    logs = log_lines(client, job_id, alice)
    skipped = [line for line in logs if line.startswith(FELL_BACK)]
    assert len(skipped) == 1 and "SafetensorError" in skipped[0]
    assert f"resumed from step {previous} of 24" in logs
    assert f"resumed from step {newest} of 24" not in logs
    loss = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=alice).json()["series"]["loss"]
    assert [s for s, _ in loss] == list(range(1, 25))
