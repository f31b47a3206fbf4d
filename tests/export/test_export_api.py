"""Export through the API with a LoRA fine-tune of tiny-random-gemma3: each format's files load
in their real consumer (PEFT, transformers, llama.cpp), the built-in checks are recorded, a
fine-tune with a GGUF export chats through llama.cpp, an identical export is reused, downloads
resume with HTTP Range, refusals say why, and another user's model cannot be exported."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest

from tests.api.test_chat_api import HELLO, inference_health
from tests.api.test_jobs_api import wait_status
from tests.conftest import add_user, bearer
from tests.export.conftest import Bucket
from tests.fine_tuned import add_fine_tuned
from tests.hub_server import FakeHub

TINY = "tiny-random-gemma3"


@pytest.fixture
def api(make_client, settings, tiny_adapter):
    client = make_client(auth="local", run_jobs=True)
    alice = bearer(add_user(settings, "alice"))
    bob = bearer(add_user(settings, "bob"))
    model_id = add_fine_tuned(settings, "alice", tiny_adapter, "Support bot")
    return client, alice, bob, model_id


def export(client, headers, model_id: str, **body: object) -> dict:
    """Start an export and wait for it to end; the export record."""
    created = client.post(f"/api/v1/models/{model_id}/exports", json=body, headers=headers)
    assert created.status_code in (200, 201), created.text
    url = f"/api/v1/exports/{created.json()['id']}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        record = client.get(url, headers=headers).json()
        if record["status"] not in ("queued", "running"):
            return dict(record)
        time.sleep(0.2)
    raise AssertionError(f"export still {record['status']}")


def close_to_estimate(client, headers, model_id: str, export: dict) -> bool:
    """The export's real size is within 10% of the estimate shown before it started."""
    choices = client.get(f"/api/v1/models/{model_id}/export-choices", headers=headers).json()
    estimate = next(
        c["bytes"]
        for c in choices["choices"]
        if (c["format"], c["quantization"]) == (export["format"], export["quantization"])
    )
    return abs(export["size_bytes"] - estimate) <= 0.1 * export["size_bytes"]


def unzip(client, headers, export_id: str, into: Path) -> list[str]:
    response = client.get(f"/api/v1/exports/{export_id}/download", headers=headers)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        archive.extractall(into)
        return sorted(archive.namelist())


def logits_and_greedy(model_dir: Path, adapter: Path | None = None):
    """Logits on the fixed prompts and their 16 greedy tokens, from plain transformers (with
    PEFT when `adapter` is given)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneforge.export.gguf_check import prompt_ids

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    logits, tokens = [], []
    with torch.inference_mode():
        for ids in prompt_ids(model_dir):
            logits.append(model(torch.tensor([ids])).logits[0])
            out = model.generate(
                input_ids=torch.tensor([ids]),
                max_new_tokens=16,
                min_new_tokens=16,
                do_sample=False,
                pad_token_id=0,
            )
            tokens.append(out[0, len(ids) :].tolist())
    return logits, tokens


@pytest.mark.heavy
@pytest.mark.timeout(900)
def test_adapter_and_merged_exports_load_in_their_consumers(api, tiny_model, tmp_path) -> None:
    client, alice, _, model_id = api
    choices = client.get(f"/api/v1/models/{model_id}/export-choices", headers=alice).json()
    offered = {(c["format"], c["quantization"]) for c in choices["choices"]}
    assert {("adapter", None), ("merged", None), ("gguf", "q8_0"), ("ollama", "f16")} <= offered
    assert all(c["bytes"] > 0 for c in choices["choices"])

    adapter = export(client, alice, model_id, format="adapter")
    assert adapter["status"] == "succeeded", adapter["error"]
    files = unzip(client, alice, adapter["id"], tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(files)
    assert not [name for name in files if name.startswith(".")]  # no bookkeeping files
    assert "chat_template.jinja" in files and "tokenizer.json" in files
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert "base_model: tiny-random-gemma3" in card and "PeftModel.from_pretrained" in card
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    loaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "adapter"
    )
    assert loaded.peft_config["default"].r == 8

    merged = export(client, alice, model_id, format="merged")
    assert merged["status"] == "succeeded", merged["error"]
    check = merged["verification"]["merge"]
    assert close_to_estimate(client, alice, model_id, merged)
    assert check["passed"] and check["max_abs_logit_diff"] < 1e-3
    files = unzip(client, alice, merged["id"], tmp_path / "merged")
    assert {"config.json", "model.safetensors", "generation_config.json"} <= set(files)
    assert not any(name.startswith("adapter_") for name in files)
    reference, tuned_tokens = logits_and_greedy(tiny_model, tmp_path / "adapter")
    plain, merged_tokens = logits_and_greedy(tmp_path / "merged")  # plain transformers, no PEFT
    assert max(float((a - b).abs().max()) for a, b in zip(plain, reference, strict=True)) < 1e-3
    assert merged_tokens == tuned_tokens

    # The same export again: the existing one comes back, nothing is recomputed.
    again = client.post(
        f"/api/v1/models/{model_id}/exports", json={"format": "merged"}, headers=alice
    )
    assert again.status_code == 200 and again.json()["reused"] is True
    assert again.json()["id"] == merged["id"]
    # A job asking for it again reuses the files (they are not made a second time).
    job = client.post(
        "/api/v1/jobs",
        json={"kind": "export", "spec": {"model_id": model_id, "format": "merged"}},
        headers=alice,
    )
    assert job.status_code == 201, job.text
    done = wait_status(client, job.json()["id"], alice, "succeeded", timeout=120)
    assert done["result"]["reused_from"] == merged["id"]
    listed = client.get(f"/api/v1/models/{model_id}/exports", headers=alice).json()["items"]
    assert [e["format"] for e in listed] == ["merged", "merged", "adapter"]
    assert all(e["download_url"] for e in listed)


def served_by(client, headers, model_id: str, **body: object) -> tuple[str, str | None]:
    """The engine a greedy chat with the model ran on, and the GGUF file it newly loaded."""
    started = client.app.state.inference.process.pid is not None
    before = set(inference_health(client)["loads"]) if started else set()
    chat = {"model": model_id, "messages": HELLO, "temperature": 0, "max_new_tokens": 6}
    answer = client.post("/api/v1/chat", json={**chat, **body, "stream": False}, headers=headers)
    assert answer.status_code == 200, answer.text
    loaded = set(inference_health(client)["loads"]) - before
    gguf = next((key[key.rindex("/") :] for key in loaded if key.endswith(".gguf")), None)
    return answer.json()["engine"], gguf


@pytest.mark.heavy
@pytest.mark.timeout(900)
def test_gguf_and_ollama_exports_run_in_llama_cpp(api, tmp_path) -> None:
    pytest.importorskip("llama_cpp")
    client, alice, _, model_id = api
    gguf = export(client, alice, model_id, format="gguf", quantization="f16")
    assert gguf["status"] == "succeeded", gguf["error"]
    check = gguf["verification"]["gguf"]
    assert close_to_estimate(client, alice, model_id, gguf)
    assert check["architecture"] == "gemma3" and check["has_tokenizer"]
    assert check["greedy_agreement"] == [16, 16, 16]
    assert check["forced_agreement"] == [16, 16, 16]
    name = next(f["name"] for f in gguf["files"] if f["name"].endswith(".gguf"))
    assert name == "support-bot-f16.gguf"
    single = client.get(
        f"/api/v1/exports/{gguf['id']}/download", params={"file": name}, headers=alice
    )
    assert single.status_code == 200 and single.content[:4] == b"GGUF"
    assert len(single.content) == next(f["size"] for f in gguf["files"] if f["name"] == name)
    # From now on the fine-tune chats through llama.cpp, from that file (transformers on request).
    assert served_by(client, alice, model_id) == ("llama.cpp", f"/{name}")
    assert served_by(client, alice, model_id, engine="transformers")[0] == "transformers"

    ollama = export(client, alice, model_id, format="ollama", quantization="q8_0")
    assert ollama["status"] == "succeeded", ollama["error"]
    assert served_by(client, alice, model_id) == ("llama.cpp", "/support-bot-q8_0.gguf")  # newest
    assert ollama["verification"]["gguf"]["agreement_share"] >= 0.85
    assert close_to_estimate(client, alice, model_id, ollama)
    files = unzip(client, alice, ollama["id"], tmp_path / "ollama")
    assert sorted(files) == ["Modelfile", "README.md", "support-bot-q8_0.gguf"]
    modelfile = (tmp_path / "ollama" / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./support-bot-q8_0.gguf\n")
    for marker in ("<start_of_turn>user", "<start_of_turn>model", "<end_of_turn>"):
        assert marker in modelfile
    assert 'PARAMETER stop "<end_of_turn>"' in modelfile
    readme = (tmp_path / "ollama" / "README.md").read_text()
    assert "ollama create support-bot -f Modelfile" in readme


def test_downloads_resume_with_http_range(api) -> None:
    client, alice, _, model_id = api
    done = export(client, alice, model_id, format="adapter")
    url = f"/api/v1/exports/{done['id']}/download"
    whole = client.get(url, headers=alice)
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "application/zip"
    size = len(whole.content)
    part = client.get(url, headers={**alice, "Range": "bytes=100-4195"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-4195/{size}"
    assert part.content == whole.content[100:4196]
    tail = client.get(url, headers={**alice, "Range": f"bytes={size - 10}-"})
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    outside = client.get(url, headers={**alice, "Range": f"bytes={size}-"})
    assert outside.status_code == 416 and outside.headers["content-range"] == f"bytes */{size}"
    card = client.get(url, params={"file": "README.md"}, headers={**alice, "Range": "bytes=0-2"})
    assert card.status_code == 206 and card.content == b"---"
    missing = client.get(url, params={"file": "../secrets"}, headers=alice)
    assert missing.status_code == 404


def test_exports_are_refused_with_a_reason(api) -> None:
    client, alice, _, model_id = api
    url = f"/api/v1/models/{model_id}/exports"
    wrong = client.post(url, json={"format": "adapter", "quantization": "q8_0"}, headers=alice)
    assert wrong.status_code == 422
    hub = {"kind": "hub", "repo_id": "alice/support-bot"}
    no_token = client.post(url, json={"format": "adapter", "destination": hub}, headers=alice)
    assert no_token.status_code == 422
    assert "HF_TOKEN" in no_token.json()["error"]["message"]
    folder = {"kind": "directory", "path": "/tmp/out"}
    not_admin = client.post(url, json={"format": "adapter", "destination": folder}, headers=alice)
    assert not_admin.status_code == 403


def test_another_users_model_cannot_be_exported(api) -> None:
    client, alice, bob, model_id = api
    done = export(client, alice, model_id, format="adapter")
    for method, path in (
        ("GET", f"/api/v1/models/{model_id}/export-choices"),
        ("POST", f"/api/v1/models/{model_id}/exports"),
        ("GET", f"/api/v1/models/{model_id}/exports"),
        ("GET", f"/api/v1/exports/{done['id']}"),
        ("GET", f"/api/v1/exports/{done['id']}/download"),
        ("DELETE", f"/api/v1/exports/{done['id']}"),
    ):
        response = client.request(method, path, json={"format": "adapter"}, headers=bob)
        assert response.status_code == 404, (method, path)
    job = client.post(
        "/api/v1/jobs",
        json={"kind": "export", "spec": {"model_id": model_id, "format": "adapter"}},
        headers=bob,
    )
    assert job.status_code == 404
    # Deleting the model deletes its exports and their files.
    assert client.delete(f"/api/v1/models/{model_id}", headers=alice).status_code == 204
    assert client.get(f"/api/v1/exports/{done['id']}", headers=alice).status_code == 404


@pytest.mark.heavy
@pytest.mark.timeout(600)
def test_s3_and_hub_destinations_receive_every_file(
    make_client, settings, tiny_adapter, bucket: Bucket, hub: FakeHub
) -> None:
    """Through the export job: credentials from the user's secrets, the files listed back."""
    client = make_client(
        auth="local", run_jobs=True, hub_endpoint=hub.url, trusted_endpoint_hosts=["127.0.0.1"]
    )
    alice = bearer(add_user(settings, "alice"))
    model_id = add_fine_tuned(settings, "alice", tiny_adapter, "Support bot")
    for name, value in {**bucket.secrets, "HF_TOKEN": hub.token}.items():
        stored = client.put(f"/api/v1/secrets/{name}", json={"value": value}, headers=alice)
        assert stored.status_code == 200

    to_s3 = {"kind": "s3", "url": f"s3://{bucket.name}/support", "endpoint_url": bucket.endpoint}
    s3 = export(client, alice, model_id, format="adapter", destination=to_s3)
    assert s3["status"] == "succeeded", s3["error"]
    assert s3["location"] == f"s3://{bucket.name}/support"
    listed = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix="support/")["Contents"]
    in_bucket = {o["Key"].removeprefix("support/"): o["Size"] for o in listed}
    assert in_bucket == {f["name"]: f["size"] for f in s3["files"]}
    assert "README.md" in in_bucket and "adapter_model.safetensors" in in_bucket

    to_hub = {"kind": "hub", "repo_id": "tester/support-bot"}
    pushed = export(client, alice, model_id, format="adapter", destination=to_hub)
    assert pushed["status"] == "succeeded", pushed["error"]
    assert pushed["reused_from"] == s3["id"]  # the same files, delivered again
    assert hub.private["tester/support-bot"] is True
    files = hub.repos["tester/support-bot"]
    assert {name: len(data) for name, data in files.items()} == {
        f["name"]: f["size"] for f in pushed["files"]
    }
    assert b"base_model: tiny-random-gemma3" in files["README.md"]
    assert hub.card_metadata[-1]["base_model"] == "tiny-random-gemma3"
    secrets = client.get(f"/api/v1/exports/{pushed['id']}", headers=alice).text
    assert hub.token not in secrets and bucket.secrets["AWS_SECRET_ACCESS_KEY"] not in secrets


@pytest.mark.heavy
def test_administrators_export_into_allowed_server_directories(
    make_client, settings, tiny_adapter, tmp_path
) -> None:
    allowed = tmp_path / "exports"
    client = make_client(auth="local", run_jobs=True, export_directories=[str(allowed)])
    admin = bearer(add_user(settings, "root", admin=True))
    model_id = add_fine_tuned(settings, "root", tiny_adapter, "Support bot")
    url = f"/api/v1/models/{model_id}/exports"
    outside = {"format": "adapter", "destination": {"kind": "directory", "path": "/etc/x"}}
    refused = client.post(url, json=outside, headers=admin)
    assert refused.status_code == 422 and str(allowed) in refused.json()["error"]["message"]
    target = allowed / "support" / "v1"
    done = export(
        client,
        admin,
        model_id,
        format="adapter",
        destination={"kind": "directory", "path": str(target)},
    )
    assert done["status"] == "succeeded", done["error"]
    assert done["location"] == str(target)
    on_disk = {p.name: p.stat().st_size for p in target.iterdir()}
    assert on_disk == {f["name"]: f["size"] for f in done["files"]}
