"""What a vision export says about itself: the Modelfile names both GGUF files, the model card
tells how to load the files with their processor or projector, the export list words the image
checks, and the size estimate counts the projector."""

from __future__ import annotations

from tuneforge.export.card import CardFacts, model_card, modelfile
from tuneforge.export.sizes import gguf_bytes, projector_bytes
from tuneforge.export.vision_export import projector_file_name
from tuneforge.models.catalog import load_catalog
from tuneforge.ui.model_export import verification_text


def facts(export_format: str, files: list[str], quantization: str | None = None) -> CardFacts:
    return CardFacts(
        name="Seeing Bot",
        base_model="gemma-3-4b-it",
        base_name="Gemma 3 4B IT",
        base_hub_id="google/gemma-3-4b-it",
        license="Gemma Terms of Use",
        dataset="shapes",
        spec={},
        metrics={},
        format=export_format,
        quantization=quantization,
        files=files,
        vision=True,
    )


def test_the_projector_is_named_for_chat_and_ollama() -> None:
    assert projector_file_name("Seeing Bot", "q4_k_m") == "mmproj-seeing-bot-f16.gguf"
    assert projector_file_name("Seeing Bot", "f32") == "mmproj-seeing-bot-f32.gguf"
    text = modelfile("seeing-bot-q8_0.gguf", "mmproj-seeing-bot-f16.gguf")
    assert text.splitlines()[:2] == [
        "FROM ./seeing-bot-q8_0.gguf",
        "FROM ./mmproj-seeing-bot-f16.gguf",
    ]
    assert modelfile("bot-q8_0.gguf").count("FROM ") == 1  # a text model: one file


def test_model_cards_say_how_to_load_a_vision_export() -> None:
    pair = ["mmproj-seeing-bot-f16.gguf", "seeing-bot-q8_0.gguf", "Modelfile"]
    card = model_card(facts("ollama", pair, "q8_0"))
    assert "--mmproj mmproj-seeing-bot-f16.gguf" in card and "-m seeing-bot-q8_0.gguf" in card
    assert "ollama create seeing-bot -f Modelfile" in card
    merged = model_card(facts("merged", ["model.safetensors"]))
    assert 'AutoModelForImageTextToText.from_pretrained("path/to/this/folder")' in merged
    assert "AutoProcessor.from_pretrained" in merged
    adapter = model_card(facts("adapter", ["adapter_model.safetensors"]))
    assert 'AutoModelForImageTextToText.from_pretrained("google/gemma-3-4b-it")' in adapter
    assert "PeftModel.from_pretrained" in adapter


def test_the_export_list_words_the_image_checks() -> None:
    verification = {
        "merge": {"max_abs_logit_diff": 1e-6, "image": {"same_answer": True}},
        "gguf": {
            "forced_agreement": [16, 16, 16],
            "greedy_tokens": 16,
            "image": {
                "tokens_per_image": 64,
                "forced_agreement": 16,
                "greedy_tokens": 16,
                "logit_diff": 0.1,
                "image_effect": 8.9,
            },
        },
    }
    text = verification_text(verification)
    assert "greedy answer to an image prompt is base + adapter's" in text
    assert "mmproj projector (64 tokens per image) read an image in llama.cpp" in text
    assert "16 of 16 steps" in text and "moves them by 8.9" in text
    assert "beside the unquantized text model" not in text
    beside = verification["gguf"]["image"] | {"text_model": "f16"}
    quantized = {"gguf": verification["gguf"] | {"image": beside}}
    assert verification_text(quantized).endswith("beside the unquantized text model")
    unloaded = {"gguf": {"tensor_count": 28, "image": {"tokens_per_image": 64, "note": "n/a"}}}
    assert "structure checked (n/a)" in verification_text(unloaded)


def test_the_size_estimate_counts_the_projector() -> None:
    catalog = load_catalog(None)
    vision, text = catalog.get("gemma-3-4b-it"), catalog.get("gemma-3-1b-it")
    assert vision is not None and text is not None
    assert projector_bytes(text, "q8_0") == 0
    # llama.cpp's f16 mmproj of Gemma 3 4B is about 851 MB.
    assert 0.8e9 < projector_bytes(vision, "q4_k_m") < 0.9e9
    assert projector_bytes(vision, "f32") > 1.6e9
    assert gguf_bytes(vision, "q8_0") > projector_bytes(vision, "q8_0") + 3.5e9


def test_the_merged_image_answer_must_match_exactly_in_float32_only() -> None:
    import numpy as np

    from tuneforge.export.vision_export import compare_image_answers

    reference = {"tokens": [5, 6, 7], "logits": np.array([1.0, 2.0], dtype=np.float32)}
    parted = {"tokens": [5, 6, 8], "logits": np.array([1.0, 2.0005], dtype=np.float32)}
    exact = compare_image_answers(reference, parted, 1e-3)
    assert not exact["passed"] and "answers differently" in exact["problem"]
    rounded = compare_image_answers(reference, parted, 1e-3, exact=False)
    assert rounded["passed"] and not rounded["same_answer"] and "near tie" in rounded["note"]
    far = {"tokens": [5, 6, 7], "logits": np.array([1.0, 2.5], dtype=np.float32)}
    found = compare_image_answers(reference, far, 1e-3, exact=False)
    assert not found["passed"] and "differ from base + adapter by 0.5" in found["problem"]
    assert compare_image_answers(reference, dict(reference), 1e-3)["passed"]
