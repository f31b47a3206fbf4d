"""The llama.cpp engine with images: the tiny vision model exported as GGUF plus its `mmproj`
projector reads an image through mtmd (llama-cpp-python's `MTMDChatHandler`) with the same
prompt length as transformers, the pixels change its answer, the same greedy answer as
transformers; which engine `auto` picks for a request with images."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.images import png
from tuneforge.errors import EngineUnavailable, InvalidInput
from tuneforge.inference import loaders
from tuneforge.inference.engine import Delta, Finished
from tuneforge.inference.params import GenerationParams, ModelRef
from tuneforge.models.catalog import catalog
from tuneforge.models.chat_template import render

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.timeout(180)
TEXT = render(
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which colour?"}]}],
    add_generation_prompt=True,
)
GREEDY = GenerationParams(temperature=0.0, max_new_tokens=8)
SAMPLED = GenerationParams(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=8, seed=5)


def answer(engine, params: GenerationParams, images: list[bytes]) -> tuple[str, Finished]:  # type: ignore[no-untyped-def]
    events = list(engine.stream(TEXT, params, threading.Event(), None, images))
    done = events[-1]
    assert isinstance(done, Finished)
    return "".join(e.text for e in events if isinstance(e, Delta)), done


@pytest.fixture(scope="module")
def exported(
    tiny_vision_model: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny vision model as llama.cpp files: the text model and its projector (f32)."""
    from tuneforge.export.gguf import convert
    from tuneforge.export.mmproj import convert_projector
    from tuneforge.models.tokenizer import ensure_gguf

    out = tmp_path_factory.mktemp("vision-gguf")
    convert(
        tiny_vision_model,
        out / "tiny.gguf",
        "f32",
        name="tiny",
        vocab_gguf=ensure_gguf(models_dir),
    )
    convert_projector(tiny_vision_model, out / "mmproj-tiny-f32.gguf", "f32", name="tiny")
    return out


def test_llama_cpp_reads_images_through_the_projector(
    exported: Path, tiny_vision_model: Path
) -> None:
    from tuneforge.inference.hf_engine import TransformersEngine
    from tuneforge.inference.llamacpp_engine import LlamaCppEngine

    engine = LlamaCppEngine(exported / "tiny.gguf", 2, 2048, exported / "mmproj-tiny-f32.gguf")
    reference = TransformersEngine(tiny_vision_model)
    red, blue = png("red", size=200, seed=1), png("blue", size=200, seed=1)
    text, done = answer(engine, GREEDY, [red])
    want, want_done = answer(reference, GREEDY, [red])
    assert done.prompt_tokens == want_done.prompt_tokens  # the same frame around the image
    assert text == want
    sampled = {
        colour: answer(engine, SAMPLED, [image])[0]
        for colour, image in (("red", red), ("blue", blue))
    }
    assert sampled["red"] == answer(engine, SAMPLED, [red])[0]  # seeded: repeatable
    assert sampled["red"] != sampled["blue"]  # the pixels reach the model
    plain = render([{"role": "user", "content": "Which colour?"}], add_generation_prompt=True)
    events = list(engine.stream(plain, GREEDY, threading.Event()))  # text still works after
    assert isinstance(events[-1], Finished) and events[-1].completion_tokens == 8


def test_a_gguf_without_projector_refuses_images(exported: Path) -> None:
    from tuneforge.inference.llamacpp_engine import LlamaCppEngine

    engine = LlamaCppEngine(exported / "tiny.gguf", 2, 2048)
    with pytest.raises(InvalidInput, match="does not take images"):
        answer(engine, GREEDY, [png("red", seed=1)])


def test_auto_picks_an_engine_that_reads_the_images() -> None:
    vision = catalog().get("tiny-random-gemma3-vision")
    assert vision is not None
    ref = ModelRef(base=vision.id, artifact_key="k", kind="adapter", gguf="k/tiny.gguf")
    assert loaders.choose(ref, vision) == "llama.cpp"
    assert loaders.choose(ref.model_copy(update={"images": True}), vision) == "transformers"
    with_projector = ref.model_copy(update={"mmproj": "k/mmproj-tiny-f16.gguf", "images": True})
    assert loaders.choose(with_projector, vision) == "llama.cpp"
    assert with_projector.weights("llama.cpp") == "k/tiny.gguf+k/mmproj-tiny-f16.gguf"
    forced = ref.model_copy(update={"images": True, "engine": "llama.cpp"})
    with pytest.raises(EngineUnavailable, match="no image projector"):
        loaders.choose(forced, vision)
