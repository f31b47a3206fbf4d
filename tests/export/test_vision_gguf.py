"""GGUF export of a vision Gemma 3 (tiny-random-gemma3-vision), checked in its consumer: the
text model and the `mmproj` projector file load in llama.cpp's multimodal library (mtmd, through
llama-cpp-python), and an image prompt there answers like transformers. A projector that loses
the image, and one that does not fit its model, are caught.

Converted files are shared per module; each test takes well under a minute.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.export.test_gguf import needs_llama_cpp
from tuneforge.export import gguf, mmproj
from tuneforge.export.gguf import GgufConversionError
from tuneforge.export.gguf_header import read_header
from tuneforge.export.vision_check import check_image, image_prompt, sample_image
from tuneforge.export.vision_export import MAX_IMAGE_DIFF_SHARE, check_projector
from tuneforge.models.tokenizer import ensure_gguf


def text_and_projector(
    model_dir: Path, models_dir: Path, out: Path, convert_projector: Callable[..., object]
) -> tuple[Path, Path]:
    """The model in `model_dir` as an f16 text GGUF and its f16 projector (written by the
    family's `convert_projector`), in `out`."""
    model, projector = out / "tiny-f16.gguf", out / "mmproj-tiny-f16.gguf"
    gguf.convert(model_dir, model, "f16", name="tiny", vocab_gguf=ensure_gguf(models_dir))
    convert_projector(model_dir, projector, "f16", name="tiny")
    return model, projector


@pytest.fixture(scope="module")
def pair(tiny_vision_model: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny vision model as an f16 text GGUF and its f16 projector."""
    out = tmp_path_factory.mktemp("vision")
    return text_and_projector(tiny_vision_model, models_dir, out, mmproj.convert_projector)


def test_the_text_model_holds_the_language_model_and_the_vocabulary(pair) -> None:
    model, _ = pair
    header = read_header(model)
    assert header.fields["general.architecture"] == "gemma3"
    assert header.fields["gemma3.embedding_length"] == 64
    names = [name for name, _shape, _type in header.tensors]
    assert "token_embd.weight" in names and "blk.1.ffn_down.weight" in names
    assert not [n for n in names if n.startswith(("v.", "mm."))]  # the encoder is not here
    tokens = header.fields["tokenizer.ggml.tokens"]
    assert len(tokens) == 262208  # the embedding's rows
    assert tokens[262144] == "<image_soft_token>"
    assert tokens[255999] == "<start_of_image>" and tokens[256000] == "<end_of_image>"


def test_the_projector_is_llama_cpps_gemma3_clip(pair, tiny_vision_model: Path) -> None:
    _, projector = pair
    fields = read_header(projector).fields
    assert fields["general.architecture"] == "clip"
    assert fields["general.type"] == "mmproj"
    assert fields["clip.projector_type"] == "gemma3"
    assert fields["clip.has_vision_encoder"] is True
    config = json.loads((tiny_vision_model / "config.json").read_text())
    vision = config["vision_config"]
    assert fields["clip.vision.image_size"] == vision["image_size"]
    assert fields["clip.vision.patch_size"] == vision["patch_size"]
    assert fields["clip.vision.embedding_length"] == vision["hidden_size"]
    assert fields["clip.vision.projection_dim"] == 64  # the decoder's width
    assert fields["clip.vision.block_count"] == vision["num_hidden_layers"]
    assert fields["clip.vision.image_mean"] == fields["clip.vision.image_std"] == [0.5] * 3
    # llama.cpp's default pools 4 x 4 patches (64 x 64 into 256 tokens); the tiny model pools
    # its patches into 64 tokens, which the scale factor tells llama.cpp.
    side = vision["image_size"] // vision["patch_size"]
    assert config["mm_tokens_per_image"] == 64
    assert fields["clip.vision.projector.scale_factor"] == side // 8 != 4
    summary = mmproj.describe_projector(projector)
    assert summary.tokens_per_image == 64 and summary.encoder_layers == 2
    names = {name for name, _shape, _type in read_header(projector).tensors}
    assert {"v.patch_embd.weight", "v.position_embd.weight", "v.blk.0.attn_q.weight",
            "v.blk.1.ffn_down.bias", "v.post_ln.weight", "mm.input_projection.weight",
            "mm.soft_emb_norm.weight"} <= names  # fmt: skip
    assert mmproj.structure_problems(projector, tiny_vision_model) == []


@pytest.mark.timeout(240)
def test_an_image_through_llama_cpp_answers_like_transformers(
    pair, tiny_vision_model: Path
) -> None:
    needs_llama_cpp()
    model, projector = pair
    found = check_image(model, projector, tiny_vision_model)
    assert found.same_prompt  # the text around the image: the same ids on both sides
    assert found.forced == found.n == 16 and found.greedy == 16
    # The image moves the logits by whole units; llama.cpp's f16 differs by rounding only.
    assert found.image_effect > 1.0
    assert found.logit_diff < 0.01 * found.image_effect


@pytest.mark.timeout(240)
def test_a_projector_of_other_weights_is_caught(
    pair, tiny_vision_model: Path, tmp_path: Path
) -> None:
    """The projector of a model whose image projection differs (as one made from the base
    instead of the fine-tune would be) fails the image check."""
    needs_llama_cpp()
    from safetensors.numpy import load_file, save_file

    model, _ = pair
    other = tmp_path / "other"
    shutil.copytree(tiny_vision_model, other)
    weights = load_file(other / "model.safetensors")
    key = next(k for k in weights if k.endswith("mm_input_projection_weight"))
    weights[key] = weights[key][:, ::-1].copy()  # the same values, sent to other dimensions
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    wrong = tmp_path / "mmproj-wrong.gguf"
    mmproj.convert_projector(other, wrong, "f16", name="wrong")
    assert mmproj.structure_problems(wrong, tiny_vision_model) == []  # it fits, but garbles
    result, problems = check_projector(model, wrong, tiny_vision_model, 0.9, threads=2)
    assert result["loaded_in_llama_cpp"] is True
    assert result["logit_diff"] > MAX_IMAGE_DIFF_SHARE * result["image_effect"]
    assert any("does not carry the image" in p for p in problems)


def test_a_projector_that_does_not_fit_its_model_is_described(
    pair, tiny_vision_model: Path, tmp_path: Path
) -> None:
    _, projector = pair
    other = tmp_path / "other"
    other.mkdir()
    for file in tiny_vision_model.iterdir():
        if file.suffix == ".safetensors":
            (other / file.name).symlink_to(file)
        elif file.is_file():
            shutil.copyfile(file, other / file.name)
    config = json.loads((other / "config.json").read_text())
    config["mm_tokens_per_image"] = 256
    config["text_config"]["hidden_size"] = 128
    (other / "config.json").write_text(json.dumps(config))
    problems = mmproj.structure_problems(projector, other)
    assert "its tokens per image is 64, not 256" in problems
    assert "its projection size is 64, not 128" in problems

    config["mm_tokens_per_image"] = 50  # 64 x 64 patches cannot pool into 50 tokens
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(GgufConversionError, match="do not pool evenly"):
        mmproj.convert_projector(other, tmp_path / "x.gguf", name="x")
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.timeout(120)
def test_a_projector_llama_cpp_refuses_is_reported(
    pair, tiny_vision_model: Path, tmp_path: Path
) -> None:
    """A truncated projector: its header reads, llama.cpp refuses it, the structure check
    finds the missing data."""
    needs_llama_cpp()
    from tuneforge.export.vision_check import ProjectorNotLoaded, _Multimodal

    model, projector = pair
    cut = tmp_path / "mmproj-cut.gguf"
    cut.write_bytes(projector.read_bytes()[:-4096])
    with pytest.raises(ProjectorNotLoaded, match=r"could not load the projector mmproj-cut\.gguf"):
        _Multimodal(model, cut, threads=2, n_ctx=512)
    problems = mmproj.structure_problems(cut, tiny_vision_model)
    assert len(problems) == 1 and "tensor data is incomplete" in problems[0]
    result, found = check_projector(model, cut, tiny_vision_model, 0.9, threads=2)
    assert result["structure_checked"] and found == ["the projector's " + problems[0]]


def test_a_text_model_has_no_projector(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(GgufConversionError, match="not a Gemma 3 with an image encoder"):
        mmproj.convert_projector(tiny_model, tmp_path / "x.gguf", name="x")


def test_the_check_image_is_drawn_at_the_encoders_size() -> None:
    from io import BytesIO

    from PIL import Image

    picture = Image.open(BytesIO(sample_image(896)))
    assert picture.size == (896, 896) and picture.getpixel((448, 448)) == (220, 30, 30)
    assert image_prompt().count("<start_of_image>") == 1
