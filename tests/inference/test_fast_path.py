"""A LoRA fine-tune chats through llama.cpp without an export: its base as a GGUF, its adapter as
a GGUF LoRA adapter, checked once against transformers + PEFT; an adapter llama.cpp cannot
express falls back to transformers, saying why; fine-tunes of one base share its weights and
never answer with each other's adapters."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tuneforge.inference import fast_path, loaders, server
from tuneforge.inference.engine import Delta, Finished
from tuneforge.inference.params import GenerationParams, ModelRef
from tuneforge.inference.server import build_cache
from tuneforge.models.chat_template import render
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
BASE = "tiny-random-gemma3"
GREEDY = GenerationParams(temperature=0.0, max_new_tokens=12)
PROMPTS = [
    render([{"role": "user", "content": "Say hello."}], add_generation_prompt=True),
    render([{"role": "user", "content": "Name a colour."}], add_generation_prompt=True),
]


def adapter(tiny_model: Path, out: Path, seed: int, **config: object) -> Path:
    """A random LoRA adapter of the tiny model (both matrices non-zero: it changes answers)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tuneforge.models.loading import load_causal_lm

    torch.manual_seed(seed)
    base = load_causal_lm(tiny_model, torch.float32)
    options = {"r": 8, "lora_alpha": 64, "target_modules": "all-linear", **config}
    get_peft_model(base, LoraConfig(init_lora_weights=False, **options)).save_pretrained(out)
    return out


def stored(settings: Settings, files: Path, name: str) -> ModelRef:
    key = f"user/train/{name}/model"
    ArtifactStore(settings.resolved_storage_url).put_dir(key, files)
    return ModelRef(base=BASE, artifact_key=key, kind="adapter")


def answer(cache, ref: ModelRef, prompt: str) -> tuple[str, str]:
    """The greedy answer to `prompt`, and the engine that made it."""
    loaded = cache.get(ref)
    events = list(loaded.engine.stream(prompt, GREEDY, threading.Event(), loaded.adapter, ()))
    assert isinstance(events[-1], Finished)
    return "".join(e.text for e in events if isinstance(e, Delta)), loaded.engine.name


def test_a_lora_fine_tune_answers_through_llamacpp_as_transformers_does(
    library_settings: Settings, tiny_adapter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = library_settings
    tuned = stored(settings, tiny_adapter, "one")
    cache = build_cache(settings)
    # The first request does not wait (here) for the fast path: transformers answers it, saying
    # why, while llama.cpp is made and checked in the background.
    monkeypatch.setattr(server, "PREPARE_WAIT_SECONDS", 0.0)
    said: list[str] = []
    first = cache.get(tuned, said.append)
    assert first.engine.name == "transformers" and first.note == loaders.STILL_PREPARING
    assert said[0] == loaders.PREPARING
    assert loaders.prepare(tuned, settings) is None  # waits for that work (not a second one)
    assert fast_path.verdict(tuned.artifact_key or "", settings.data_dir) == fast_path.Verdict(True)
    loaded = cache.get(tuned)
    assert loaded.engine.name == "llama.cpp" and loaded.note is None
    slow = tuned.model_copy(update={"engine": "transformers"})
    base = ModelRef(base=BASE, engine="transformers")
    for prompt in PROMPTS:
        fast, _ = answer(cache, tuned, prompt)
        assert fast == answer(cache, slow, prompt)[0]
        assert fast != answer(cache, base, prompt)[0]  # the adapter is applied
    # Made once: a second cache (a restarted server) finds the verdict and the files.
    again: list[str] = []
    assert build_cache(settings).get(tuned, again.append).engine.name == "llama.cpp"
    assert loaders.PREPARING not in again
    # Deleted with the model.
    folder = fast_path.folder(tuned.artifact_key or "", settings.data_dir)
    assert (folder / "adapter.gguf").is_file()
    loaders.forget(tuned.artifact_key or "", settings.data_dir)
    assert not folder.exists()


def test_two_fine_tunes_of_one_base_share_it_and_keep_their_own_adapters(
    library_settings: Settings, tiny_model: Path, tmp_path: Path
) -> None:
    settings = library_settings
    first = stored(settings, adapter(tiny_model, tmp_path / "a", seed=1), "alice")
    second = stored(settings, adapter(tiny_model, tmp_path / "b", seed=2), "bob")
    cache = build_cache(settings)
    expected = {}
    for ref in (first, second):
        assert loaders.prepare(ref, settings) is None  # made and checked (waiting for it)
        slow = ref.model_copy(update={"engine": "transformers"})
        expected[ref.artifact_key] = answer(cache, slow, PROMPTS[0])[0]
    assert expected[first.artifact_key] != expected[second.artifact_key]
    for ref in (first, second, first, second):  # switching back and forth
        text, engine = answer(cache, ref, PROMPTS[0])
        assert engine == "llama.cpp" and text == expected[ref.artifact_key]
    assert cache.loads[f"llama.cpp:{BASE}"] == 1  # one copy of the base's weights
    # Each preparation ran in a thread that ended with it: a kept thread keeps llama.cpp's
    # OpenMP workers, and with more of them than cores every later answer slows down.
    deadline = time.monotonic() + 10
    while any(t.name.startswith("fast-path") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a preparation's thread is still alive"
        time.sleep(0.05)


def test_an_adapter_llamacpp_cannot_load_is_served_by_transformers_saying_why(
    library_settings: Settings, tiny_model: Path, tmp_path: Path
) -> None:
    settings = library_settings
    dora = stored(settings, adapter(tiny_model, tmp_path / "dora", seed=3, use_dora=True), "d")
    cache = build_cache(settings)
    loaders.prepare(dora, settings)  # made and judged (waiting for it)
    loaded = cache.get(dora)
    assert loaded.engine.name == "transformers"
    assert loaded.note is not None and "DoRA" in loaded.note
    found = fast_path.verdict(dora.artifact_key or "", settings.data_dir)
    assert found is not None and not found.ok and found.reason == loaded.note
    # The answer still comes, and asking for llama.cpp by name is refused with the reason.
    text, engine = answer(cache, dora, PROMPTS[0])
    assert text and engine == "transformers"
    from tuneforge.errors import EngineUnavailable

    with pytest.raises(EngineUnavailable, match="DoRA"):
        cache.engine_for(dora.model_copy(update={"engine": "llama.cpp"}))


def test_a_check_whose_answers_differ_turns_the_fast_path_off() -> None:
    from tuneforge.export.gguf_check import Check

    passed = fast_path._judge(Check(greedy=[16, 9], forced=[16, 14], near_ties=1, n=16))
    assert passed == fast_path.Verdict(True)  # 30 of 32 steps: 94%
    failed = fast_path._judge(Check(greedy=[16, 2], forced=[16, 10], near_ties=0, n=16))
    assert not failed.ok
    assert failed.reason == (
        "Its llama.cpp answers differ from transformers + PEFT (the same token at 26 of 32 "
        "checked steps; 90% needed)."
    )


def test_answers_decoded_together_read_the_bundled_base_in_f16(models_dir: Path) -> None:
    """An evaluation's llama.cpp reads the bundled Gemma 3 270M from an f16 GGUF of its
    transformers weights (made once), which answers at least as close to transformers as the
    bundled Q4_K_M file chat uses."""
    from tuneforge.export.gguf import describe
    from tuneforge.export.gguf_check import (
        agreement,
        greedy_tokens_hf,
        greedy_tokens_llamacpp,
        prompt_ids,
    )
    from tuneforge.models.catalog import load_catalog
    from tuneforge.models.loading import model_dir
    from tuneforge.models.tokenizer import ensure_gguf

    entry = load_catalog(Settings().catalog_file).get("gemma-3-270m")
    assert entry is not None
    chat = fast_path.base_gguf(entry, models_dir)
    batch = fast_path.base_gguf(entry, models_dir, batch=True)
    assert chat == ensure_gguf(models_dir)
    assert (describe(chat).file_type, describe(batch).file_type) == ("q4_k_m", "f16")
    made = batch.stat().st_mtime_ns
    assert fast_path.base_gguf(entry, models_dir, batch=True) == batch
    assert batch.stat().st_mtime_ns == made
    weights = model_dir(entry, models_dir)
    ids = prompt_ids(weights)
    expected = greedy_tokens_hf(weights, ids, 16)

    def agreeing(gguf: Path) -> int:
        found = greedy_tokens_llamacpp(gguf, ids, 16)
        return sum(agreement(a, b) for a, b in zip(expected, found, strict=True))

    assert agreeing(batch) >= agreeing(chat)
