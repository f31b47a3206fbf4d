"""Model directories for every source: the tiny random Gemma 3, the real Gemma 3 270M converted
from its GGUF, hub snapshots and local directories; and the loaders workers use."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import huggingface_hub
import pytest
import torch
import yaml
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from tests.models import models_cache_dir
from tests.models.gemma4_configs import CONFIGS, GEMMA4_TOKEN_IDS
from tuneforge.errors import ModelUnavailable, NotFound
from tuneforge.models.catalog import CatalogEntry, catalog
from tuneforge.models.chat_template import GEMMA_4, GEMMA_CHAT_TEMPLATE, render
from tuneforge.models.loading import (
    HUB_IGNORE,
    load_causal_lm,
    load_tokenizer,
    model_dir,
    model_format,
    resolve,
)
from tuneforge.models.tokenizer import (
    GEMMA4_CONTROL_TOKENS,
    MODEL_DIR,
    TOKENIZER_DIR,
    ensure_gguf,
)
from tuneforge.settings import Settings


def entry(model_id: str) -> CatalogEntry:
    found = catalog().get(model_id)
    assert found is not None
    return found


TINY = entry("tiny-random-gemma3")
GEMMA = entry("gemma-3-270m")
CONVERSATION = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "Which colour is the sky?"},
    {"role": "assistant", "content": [{"type": "text", "text": " Blue. "}]},
    {"role": "user", "content": "And grass?"},
]


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    return model_dir(TINY, models_cache_dir())


@pytest.fixture(scope="module")
def gemma_dir() -> Path:
    return model_dir(GEMMA, models_cache_dir())  # converted once, cached between test runs


def weights(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(path / "model.safetensors", framework="pt") as file:
        return {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118


def test_model_dir_for_a_built_model_answers_at_once_once_built(tiny_dir: Path) -> None:
    for built in (TINY, GEMMA):
        model_dir(built, models_cache_dir())
        start = time.perf_counter()
        model_dir(built, models_cache_dir())
        assert time.perf_counter() - start < 0.5


# -- the tiny random Gemma 3 ----------------------------------------------------------------------


def test_the_tiny_model_is_gemma_3_at_the_catalogs_sizes(tiny_dir: Path) -> None:
    arch = TINY.architecture
    config = AutoConfig.from_pretrained(tiny_dir)
    assert config.model_type == "gemma3_text"
    assert (
        config.num_hidden_layers,
        config.hidden_size,
        config.intermediate_size,
        config.num_attention_heads,
        config.num_key_value_heads,
        config.head_dim,
        config.vocab_size,
    ) == (
        arch.layers,
        arch.hidden_size,
        arch.intermediate_size,
        arch.attention_heads,
        arch.kv_heads,
        arch.head_dim,
        arch.vocab_size,
    )
    assert config.vocab_size == 262_144
    assert config.layer_types == ["sliding_attention", "full_attention"]
    assert config.sliding_window == 64
    assert config.tie_word_embeddings
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (2, 1, 0)

    model = load_causal_lm(tiny_dir, torch.float32)
    assert not model.training
    assert model.config._attn_implementation == "sdpa"
    assert sum(p.numel() for p in model.parameters()) == TINY.parameters
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.generation_config.eos_token_id == [1, 106]  # end of text or of a turn
    # The last hidden state is normalised to length sqrt(hidden_size), so the embedding's size
    # bounds how confident the model can become: LoRA must be able to reach a near-zero loss.
    embedding = model.get_input_embeddings().weight
    assert arch.hidden_size**0.5 * embedding.norm(dim=1).mean() > 10
    with torch.no_grad():
        logits = model(torch.tensor([[2, 105, 2364, 107]])).logits
    assert logits.shape == (1, 4, 262_144)
    assert torch.isfinite(logits).all()
    assert logits[0, -1].std() > 0


def test_the_tiny_tokenizer_is_gemmas_with_its_chat_template(tiny_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_dir)
    assert len(tokenizer) == 262_144
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (2, 1, 0)
    assert tokenizer.convert_tokens_to_ids(["<start_of_turn>", "<end_of_turn>"]) == [105, 106]
    assert tokenizer.chat_template == GEMMA_CHAT_TEMPLATE
    for messages, prompt in ((CONVERSATION, True), (CONVERSATION[:3], False)):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
        assert text == render(messages, add_generation_prompt=prompt)
    ids = tokenizer(render(CONVERSATION), add_special_tokens=False).input_ids
    assert ids[:2] == [2, 105] and ids.count(2) == 1


def test_the_tiny_gemma4_speaks_gemma_4s_format_with_its_control_tokens() -> None:
    path = model_dir(entry("tiny-random-gemma4"), models_cache_dir())
    assert model_format(path) is GEMMA_4
    tokenizer = load_tokenizer(path)
    assert tokenizer.chat_template == GEMMA_4.jinja
    # The image, audio and video tokens at the ids the released configs give them.
    published = CONFIGS["e2b"]
    for name, key in (
        ("<|image>", "boi_token_id"),
        ("<|image|>", "image_token_id"),
        ("<image|>", "eoi_token_id"),
        ("<|audio>", "boa_token_id"),
        ("<|audio|>", "audio_token_id"),
        ("<audio|>", "eoa_token_index"),
        ("<|video|>", "video_token_id"),
    ):
        assert GEMMA4_CONTROL_TOKENS[name] == published[key], name
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (2, 1, 0)
    assert {
        name: tokenizer.convert_tokens_to_ids(name) for name in GEMMA4_CONTROL_TOKENS
    } == GEMMA4_CONTROL_TOKENS
    assert tokenizer.convert_tokens_to_ids("<start_of_turn>") == tokenizer.unk_token_id
    for messages, prompt in ((CONVERSATION, True), (CONVERSATION[:3], False)):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
        assert text == GEMMA_4.render(messages, add_generation_prompt=prompt)
    ids = tokenizer(GEMMA_4.render(CONVERSATION), add_special_tokens=False).input_ids
    assert ids[:2] == [2, 105] and ids.count(106) == 4
    # ordinary text encodes as Gemma 3's tokenizer encodes it (the published Gemma 4 ids)
    for text, expected in GEMMA4_TOKEN_IDS.items():
        assert tokenizer(text, add_special_tokens=False).input_ids == expected
    generation = json.loads((path / "generation_config.json").read_text(encoding="utf-8"))
    assert generation["eos_token_id"] == [1, 106]  # <eos> and <turn|>


def test_the_tiny_model_is_built_the_same_every_time(tiny_dir: Path, tmp_path: Path) -> None:
    # A second cache that borrows the tokenizer (building one takes a while) builds its own copy.
    shutil.copytree(
        tiny_dir.parents[1] / MODEL_DIR / TOKENIZER_DIR, tmp_path / MODEL_DIR / TOKENIZER_DIR
    )
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    messages: list[str] = []
    again = model_dir(TINY, tmp_path, progress=messages.append)
    assert torch.equal(torch.rand(3), expected_draw)  # the build leaves the caller's RNG alone
    assert again.parent == tmp_path / TINY.id and again.name == tiny_dir.name
    assert messages == ["Building tiny-random-gemma3 (random weights, for tests)..."]
    built, reference = weights(again), weights(tiny_dir)
    assert built.keys() == reference.keys()
    assert all(torch.equal(built[name], reference[name]) for name in built)


# -- Gemma 3 270M, from its GGUF ------------------------------------------------------------------


def test_gemma_3_270m_is_converted_to_plain_safetensors(gemma_dir: Path) -> None:
    assert gemma_dir == models_cache_dir() / "gemma-3-270m" / "hf"
    config = json.loads((gemma_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["rms_norm_eps"] == 1e-6
    arch = GEMMA.architecture
    assert (config["num_hidden_layers"], config["hidden_size"], config["head_dim"]) == (
        arch.layers,
        arch.hidden_size,
        arch.head_dim,
    )
    tensors = weights(gemma_dir)
    assert {t.dtype for t in tensors.values()} == {torch.float32}
    assert sum(t.numel() for t in tensors.values()) == GEMMA.parameters  # the head is tied
    generation = json.loads((gemma_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [1, 106]
    assert (gemma_dir / "chat_template.jinja").read_text() == GEMMA_CHAT_TEMPLATE
    assert (gemma_dir / "tokenizer.json").is_file()


def test_gemma_3_270m_loads_fast_and_knows_where_paris_is(gemma_dir: Path) -> None:
    start = time.perf_counter()
    model = load_causal_lm(gemma_dir, torch.float32)
    assert time.perf_counter() - start < 10  # memory-mapped: well under a second when idle
    tokenizer = load_tokenizer(gemma_dir)
    for prompt in (
        "The capital of Germany is Berlin. The capital of France is",
        "The Eiffel Tower is located in the city of",
    ):
        encoded = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**encoded, max_new_tokens=3, do_sample=False)
        answer = tokenizer.decode(out[0, encoded.input_ids.shape[1] :])
        assert answer.startswith(" Paris"), (prompt, answer)
    assert load_causal_lm(gemma_dir, torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.slow
def test_gemma_3_270m_is_exactly_the_dequantised_gguf(gemma_dir: Path) -> None:
    gguf = ensure_gguf(models_cache_dir())
    reference = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    converted = load_causal_lm(gemma_dir, torch.float32)
    expected, saved = reference.state_dict(), converted.state_dict()
    assert expected.keys() == saved.keys()
    assert all(torch.equal(expected[name], saved[name]) for name in expected)
    tokenizer = load_tokenizer(gemma_dir)
    encoded = tokenizer(
        render(CONVERSATION, add_generation_prompt=True) + "Green. Water boils at",
        return_tensors="pt",
    )
    with torch.no_grad():
        want, got = reference(**encoded).logits, converted(**encoded).logits
    # The weights are the same float32 numbers (checked above) and the config differs only in
    # how rms_norm_eps is written (1e-06, which is 9.99999997e-07 once in float32, like the
    # GGUF's), so the logits may differ only by the order of float32 additions: 1e-4 leaves
    # room for that while logits span tens. (Storing bfloat16 instead moved them by up to 0.44.)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


# -- hub and local models -------------------------------------------------------------------------


def test_a_hub_model_without_a_hub_fails_naming_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # refused
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelUnavailable) as error:
        model_dir(entry("gemma-3-1b-it"), tmp_path, progress=lambda _: None)
    message = error.value.message
    assert "Gemma 3 1B IT (google/gemma-3-1b-it)" in message
    assert "Hugging Face Hub is unreachable" in message


def fake_snapshot(source: Path, snapshot: Path, calls: list[dict[str, Any]]) -> Any:
    """`snapshot_download` for a hub that holds a copy of `source` without a chat template."""

    def snapshot_download(repo_id: str, *, local_files_only: bool = False, **kwargs: Any) -> str:
        calls.append({"repo_id": repo_id, "local_files_only": local_files_only, **kwargs})
        if not snapshot.exists():
            if local_files_only:
                raise LocalEntryNotFoundError("not in the cache")
            shutil.copytree(source, snapshot, ignore=shutil.ignore_patterns("chat_template.*"))
        return str(snapshot)

    return snapshot_download


def test_a_hub_snapshot_gets_gemmas_template_when_it_has_none(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    snapshot = tmp_path / "snapshot"
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", fake_snapshot(tiny_dir, snapshot, calls)
    )
    hub_model = entry("gemma-3-1b-it")
    messages: list[str] = []
    path = model_dir(hub_model, tmp_path / "models", token="hf_secret", progress=messages.append)
    assert path == snapshot
    call = {
        "repo_id": "google/gemma-3-1b-it",
        "cache_dir": tmp_path / "models" / "hub",
        "token": "hf_secret",
        "ignore_patterns": HUB_IGNORE,
    }
    assert calls == [call | {"local_files_only": True}, call | {"local_files_only": False}]
    assert messages == [
        "Downloading Gemma 3 1B IT (google/gemma-3-1b-it) from the Hugging Face Hub (once)..."
    ]
    template = snapshot / "chat_template.jinja"
    assert template.read_text() == GEMMA_CHAT_TEMPLATE
    # Once cached, the snapshot is used without asking the hub; a template of its own is kept.
    template.write_text("{{ messages[0]['content'] }}")
    assert model_dir(hub_model, tmp_path / "models", progress=messages.append) == snapshot
    assert calls[2:] == [call | {"local_files_only": True, "token": None}]
    assert len(messages) == 1
    assert template.read_text() == "{{ messages[0]['content'] }}"


def test_a_gated_hub_model_says_how_to_get_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def gated(repo_id: str, *, local_files_only: bool = False, **_: Any) -> str:
        if local_files_only:
            raise LocalEntryNotFoundError("not in the cache")
        url = f"https://huggingface.co/api/models/{repo_id}"
        response = httpx2.Response(401, request=httpx2.Request("GET", url))
        raise GatedRepoError("gated", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(
        ModelUnavailable, match=r"accept its licence \(Gemma Terms of Use\) at https://"
    ):
        model_dir(entry("gemma-3-4b-it"), tmp_path, progress=lambda _: None)


def write_catalog(path: Path, model_path: Path | str) -> Path:
    local = entry("tiny-random-gemma3").model_dump(exclude={"offline", "test_only"}) | {
        "id": "my-model",
        "name": "My model",
        "source": "local",
        "path": str(model_path),
    }
    path.write_text(yaml.safe_dump({"models": [local]}), encoding="utf-8")
    return path


def settings_for(tmp_path: Path, catalog_file: Path | None = None) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path,
        model_cache_dir=models_cache_dir(),
        catalog_file=catalog_file,
    )


def test_a_local_model_is_its_directory(tiny_dir: Path, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, write_catalog(tmp_path / "extra.yaml", tiny_dir))
    local, path = resolve("my-model", settings)
    assert (local.id, local.source, path) == ("my-model", "local", tiny_dir)
    model = load_causal_lm(path, torch.float32)
    assert model.config.vocab_size == 262_144


@pytest.mark.parametrize(
    ("where", "problem"), [("absent", "does not exist"), ("empty", "no config.json")]
)
def test_a_missing_local_model_is_explained(tmp_path: Path, where: str, problem: str) -> None:
    (tmp_path / "empty").mkdir()
    settings = settings_for(tmp_path, write_catalog(tmp_path / "extra.yaml", where))
    with pytest.raises(ModelUnavailable, match=problem) as error:
        resolve("my-model", settings)
    assert str(tmp_path / where) in error.value.message


def test_resolve_finds_built_in_models_and_refuses_unknown_ones(
    tiny_dir: Path, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    assert resolve("tiny-random-gemma3", settings) == (TINY, tiny_dir)
    with pytest.raises(NotFound) as error:
        resolve("gemma-7b", settings)
    assert "no model 'gemma-7b' in the catalog" in error.value.message
    assert "gemma-3-270m, gemma-3-270m-it" in error.value.message
    assert "tiny-random" not in error.value.message


def test_a_model_loaded_while_another_is_being_built_gets_every_weight(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers patches process-wide state while it builds a model (its weight tying off):
    a load in another thread meanwhile waits its turn instead of coming out with the tied
    output layer left on the meta device."""
    building, second_done = threading.Event(), threading.Event()
    post_init = PreTrainedModel.post_init

    def paused(model: Any) -> None:
        if threading.current_thread() is first:  # in the middle of the first build
            building.set()
            second_done.wait(timeout=5)  # the second load, free to run, would finish first
        post_init(model)

    monkeypatch.setattr(PreTrainedModel, "post_init", paused)
    models: list[Any] = []
    first = threading.Thread(target=lambda: models.append(load_causal_lm(tiny_dir, torch.float32)))
    first.start()
    assert building.wait(timeout=60)
    second = load_causal_lm(tiny_dir, torch.float32)
    second_done.set()
    first.join(timeout=60)
    assert len(models) == 1  # the first load finished too
    for model in [second, *models]:
        assert not [name for name, p in model.named_parameters() if p.is_meta]
        with torch.inference_mode():
            assert model(torch.tensor([[2, 651, 6037]])).logits.isfinite().all()
