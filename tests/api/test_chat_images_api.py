"""Chat with images through `POST /api/v1/chat` on tiny-random-gemma3-vision: the image goes
through the vision path (its soft tokens in the prompt, its pixels in the answer), whole and
streamed; what is refused and how clearly: a text-only model, SVG, oversized, undecodable and
too many images, links to hosts no administrator allowed, private addresses; allowed links
fetched within their bounds; request bodies bounded; another user's model 404s."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.api.test_chat_api import streamed
from tests.conftest import add_user, bearer
from tests.fine_tuned import add_fine_tuned
from tests.images import png
from tests.inference.test_llamacpp_vision import exported  # noqa: F401  (a fixture)
from tuneforge.client.chat import image_part
from tuneforge.db.session import make_engine, make_sessionmaker, transaction
from tuneforge.db.tables import Export, Model
from tuneforge.inference.params import MAX_IMAGES
from tuneforge.storage import ArtifactStore

pytestmark = [pytest.mark.timeout(300), pytest.mark.heavy]
VISION = "tiny-random-gemma3-vision"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><image href="http://example.com/x.png"/></svg>'


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(data).decode()


def turn(*urls: str, text: str = "Which colour is the square?") -> dict:
    parts: list[dict] = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def ask(client, headers, *urls: str, model: str = VISION, **body):
    return client.post(
        "/api/v1/chat",
        json={
            "model": model,
            "messages": [turn(*urls)],
            "temperature": 0,
            "max_new_tokens": 6,
            "stream": False,
            **body,
        },
        headers=headers,
    )


@pytest.fixture
def api(make_client, settings):
    client = make_client(auth="local")
    return client, bearer(add_user(settings, "alice"))


def test_an_image_goes_through_the_vision_path(api, tiny_vision_model) -> None:
    client, alice = api
    models = client.get("/api/v1/chat/models", headers=alice).json()["items"]
    seeing = {m["id"]: m["images"] for m in models}
    assert seeing[VISION] is True and seeing["tiny-random-gemma3"] is False
    text_only = client.post(
        "/api/v1/chat",
        json={
            "model": VISION,
            "messages": [{"role": "user", "content": "Which colour is the square?"}],
            "temperature": 0,
            "max_new_tokens": 6,
            "stream": False,
        },
        headers=alice,
    )
    assert text_only.status_code == 200, text_only.text
    red_bytes = png("red", size=120, seed=1)
    red_png, blue_png = data_url(red_bytes), data_url(png("blue", seed=2))
    assert image_part(red_bytes) == {"type": "image_url", "image_url": {"url": red_png}}
    red = ask(client, alice, red_png)
    assert red.status_code == 200, red.text
    plain, seen = text_only.json()["usage"], red.json()["usage"]
    # The image's 64 soft tokens and its frame (one \n\n joins the turn's \n: 68 - 1).
    assert seen["prompt_tokens"] == plain["prompt_tokens"] + 67
    # Seeded sampling among the 40 likeliest tokens (greedy answers of a random model are all
    # newlines): the same image gives the same answer, different images different ones.
    sampled = {"temperature": 1.0, "top_k": 40, "top_p": 1.0, "seed": 5}
    answers = [
        ask(client, alice, image, **sampled).json()["message"]
        for image in (red_png, blue_png, red_png)
    ]
    assert answers[0] == answers[2] and answers[0] != answers[1]
    streamed_answer = client.post(
        "/api/v1/chat",
        json={
            "model": VISION,
            "messages": [turn(red_png)],
            "temperature": 0,
            "max_new_tokens": 6,
        },
        headers=alice,
    )
    text, done = streamed(streamed_answer)
    assert text == red.json()["message"]["content"]
    assert done["usage"] == red.json()["usage"]


def test_what_is_refused_and_how_clearly(api, make_client, settings, tiny_vision_model) -> None:
    client, alice = api
    image = data_url(png("red", size=64, seed=1))
    refused = ask(client, alice, image, model="tiny-random-gemma3")
    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith(
        "Tiny random Gemma 3 (tests) does not take images"
    )
    svg = ask(client, alice, data_url(SVG, "image/svg+xml"))
    assert svg.status_code == 422 and "SVG" in svg.json()["error"]["message"]
    disguised = ask(client, alice, data_url(SVG, "image/png"))  # the header decides, not the type
    assert disguised.status_code == 422
    assert disguised.json()["error"]["details"]["reason"] == "image_type"
    broken = ask(client, alice, data_url(png("red", size=64, seed=1)[:60]))
    assert broken.status_code == 422
    assert broken.json()["error"]["details"]["reason"] == "image_undecodable"
    many = ask(client, alice, *[image] * (MAX_IMAGES + 1))
    assert many.status_code == 422 and f"at most {MAX_IMAGES}" in many.json()["error"]["message"]
    in_answer = client.post(
        "/api/v1/chat",
        json={
            "model": VISION,
            "messages": [turn(), {"role": "assistant", "content": [turn(image)["content"][0]]}],
        },
        headers=alice,
    )
    assert in_answer.status_code == 422
    small = make_client(auth="local", chat_image_max_bytes=2_000, chat_image_max_pixels=10_000)
    bob = bearer(add_user(settings, "bob"))
    large = ask(small, bob, data_url(png("red", size=400, seed=1)))  # ~ 80 KB
    assert large.status_code == 422
    assert large.json()["error"]["details"]["reason"] == "image_too_large"
    assert "larger than the limit" in large.json()["error"]["message"]
    wide = ask(small, bob, data_url(_flat_png(200, 100)))  # 20,000 pixels, a few hundred bytes
    assert wide.status_code == 422 and "MP" in wide.json()["error"]["message"]


def _flat_png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def test_request_bodies_are_bounded(make_client, settings) -> None:
    client = make_client(auth="local", max_chat_request_bytes=200_000)
    alice = bearer(add_user(settings, "alice"))
    body = ask(client, alice, data_url(b"\x89PNG" + b"0" * 300_000))
    assert body.status_code == 413


served_red = png("red", size=120, seed=1)


@pytest.fixture
def image_host() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that serves /red.png and a /huge.png of 3 MB."""
    files = {"/red.png": served_red, "/huge.png": b"\x89PNG" + b"0" * 3_000_000}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = files.get(self.path)
            if data is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()  # no Content-Length: the size is counted while reading
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_links_are_fetched_only_from_hosts_an_administrator_allows(
    make_client, settings, image_host, tiny_vision_model
) -> None:
    closed = make_client(auth="local")
    alice = bearer(add_user(settings, "alice"))
    refused = ask(closed, alice, f"{image_host}/red.png")
    assert refused.status_code == 422
    message = refused.json()["error"]["message"]
    assert "does not fetch images from 127.0.0.1" in message and "image_url_hosts" in message
    assert ask(closed, alice, "ftp://127.0.0.1/red.png").status_code == 422
    private = make_client(auth="local", image_url_hosts=["127.0.0.1"])
    local = ask(private, alice, f"{image_host}/red.png")  # allowed, but a private address
    assert (
        local.status_code == 422 and "private or local address" in local.json()["error"]["message"]
    )
    trusted = make_client(
        auth="local",
        image_url_hosts=["127.0.0.1"],
        trusted_endpoint_hosts=["127.0.0.1"],
        chat_image_max_bytes=1_000_000,
    )
    fetched = ask(trusted, alice, f"{image_host}/red.png")
    assert fetched.status_code == 200, fetched.text
    inline = ask(trusted, alice, data_url(served_red))
    assert fetched.json()["message"] == inline.json()["message"]  # the same image, read
    huge = ask(trusted, alice, f"{image_host}/huge.png")
    assert (
        huge.status_code == 422 and huge.json()["error"]["details"]["reason"] == "image_too_large"
    )
    missing = ask(trusted, alice, f"{image_host}/nothing.png")
    assert missing.status_code == 422 and "HTTP 404" in missing.json()["error"]["message"]


@pytest.fixture(scope="module")
def vision_adapter(tiny_vision_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter over the tiny vision model's language model, randomly initialised (both
    matrices non-zero), so it answers differently from its base."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tuneforge.models.loading import load_causal_lm, load_tokenizer

    torch.manual_seed(7)
    base = load_causal_lm(tiny_vision_model, torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=64,
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
        init_lora_weights=False,
    )
    out = tmp_path_factory.mktemp("vision-adapter")
    get_peft_model(base, config).save_pretrained(out)
    load_tokenizer(tiny_vision_model).save_pretrained(out)
    return out


def test_a_fine_tune_of_the_vision_model_reads_images_and_is_its_owners(
    api, settings, vision_adapter
) -> None:
    client, alice = api
    tuned = add_fine_tuned(settings, "alice", vision_adapter, name="Colour namer")
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        session.execute(update(Model).where(Model.id == tuned).values(base_model=VISION))
    images = [data_url(png(colour, size=120, seed=s)) for colour, s in (("red", 1), ("blue", 2))]
    # (each image made once: the generated noise differs between calls)
    sampled = {"temperature": 1.0, "top_k": 40, "top_p": 1.0, "seed": 5}
    mine = [ask(client, alice, image, model=tuned, **sampled) for image in images]
    assert all(r.status_code == 200 for r in mine), mine[0].text
    base = [ask(client, alice, image, **sampled) for image in images]
    assert [r.json()["usage"] for r in mine] == [r.json()["usage"] for r in base]
    answers = [r.json()["message"]["content"] for r in mine]
    assert answers != [r.json()["message"]["content"] for r in base]  # the adapter acts
    assert answers[0] != answers[1]  # and sees the image
    listed = client.get("/api/v1/chat/models", headers=alice).json()["items"]
    assert next(m for m in listed if m["id"] == tuned)["images"] is True
    bob = bearer(add_user(settings, "bob"))
    assert ask(client, bob, images[0], model=tuned).status_code == 404
    assert ask(client, bob, images[0], model="no-such-model").status_code == 404


def test_the_openai_client_sends_an_image(api, tiny_vision_model) -> None:
    import openai

    client, alice = api
    token = alice["Authorization"].removeprefix("Bearer ")
    sdk = openai.OpenAI(
        base_url=f"{client.base_url}/v1", api_key=token, http_client=client, max_retries=0
    )
    red, blue = data_url(png("red", size=120, seed=1)), data_url(png("blue", size=90, seed=2))

    def ask_sdk(url: str, **extra):  # type: ignore[no-untyped-def]
        return sdk.chat.completions.create(
            model=VISION,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Which colour is the square?"},
                        {"type": "image_url", "image_url": {"url": url, "detail": "auto"}},
                    ],
                }
            ],
            max_tokens=6,
            temperature=1.0,
            seed=5,
            extra_body={"top_k": 40},
            **extra,
        )

    first = ask_sdk(red)
    assert first.usage is not None and first.usage.completion_tokens == 6
    text_only = sdk.chat.completions.create(
        model=VISION,
        messages=[{"role": "user", "content": "Which colour is the square?"}],
        max_tokens=6,
        temperature=0,
    )
    assert text_only.usage is not None
    # The text + 64 image tokens + their frame of 4 (the image after the text: nothing merges).
    assert first.usage.prompt_tokens == text_only.usage.prompt_tokens + 64 + 4
    assert ask_sdk(red).choices[0].message.content == first.choices[0].message.content
    assert ask_sdk(blue).choices[0].message.content != first.choices[0].message.content
    pieces = [
        chunk.choices[0].delta.content or "" for chunk in ask_sdk(red, stream=True) if chunk.choices
    ]
    assert "".join(pieces) == first.choices[0].message.content
    with pytest.raises(openai.UnprocessableEntityError, match="does not take images"):
        sdk.chat.completions.create(
            model="tiny-random-gemma3",
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": red}}]}
            ],
        )
    with pytest.raises(openai.UnprocessableEntityError, match="image_url_hosts"):
        ask_sdk("https://example.com/cat.png")


def test_chat_images_have_the_same_default_limits_as_dataset_images() -> None:
    from tuneforge.data.limits import ParseLimits
    from tuneforge.settings import Settings

    fields = Settings.model_fields
    assert fields["chat_image_max_bytes"].default == ParseLimits().max_image_bytes
    assert fields["chat_image_max_pixels"].default == ParseLimits().max_image_pixels


def test_a_gguf_export_with_its_projector_answers_images_with_llama_cpp(
    api,
    settings,
    vision_adapter,
    exported,  # noqa: F811  (the fixture imported above)
) -> None:
    """A fine-tune whose verified GGUF export holds the text model and `mmproj-*.gguf` is served
    by llama.cpp, images included (its projector found by name beside the model)."""
    pytest.importorskip("llama_cpp")
    client, alice = api
    tuned = add_fine_tuned(settings, "alice", vision_adapter, name="Exported")
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with transaction(factory) as session:
        row = session.get(Model, tuned)
        assert row is not None
        row.base_model = VISION
        key = f"{row.owner_id}/exports/{tuned}/gguf-f32"
        ArtifactStore(settings.resolved_storage_url).put_dir(key, exported)
        files = sorted(p.name for p in exported.iterdir())
        assert files == ["mmproj-tiny-f32.gguf", "tiny.gguf"]  # the projector listed first
        session.add(
            Export(
                owner_id=row.owner_id,
                model_id=tuned,
                format="gguf",
                quantization="f32",
                destination={"kind": "download"},
                status="succeeded",
                artifact_key=key,
                files=[{"name": name} for name in files],
            )
        )
    image = data_url(png("red", size=120, seed=1))
    served = ask(client, alice, image, model=tuned)
    assert served.status_code == 200, served.text
    assert served.json()["engine"] == "llama.cpp"
    base = ask(client, alice, image, engine="transformers")
    assert served.json()["usage"]["prompt_tokens"] == base.json()["usage"]["prompt_tokens"]
    # The exported file is the base's weights: llama.cpp answers as transformers does.
    assert served.json()["message"] == base.json()["message"]
