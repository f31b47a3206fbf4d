"""The LLM methods of augmentation (paraphrase, back-translation) against a loopback
OpenAI-compatible server that answers deterministically: which turns are rewritten is fixed by
the seed, requests go out concurrently, a back-translation is two requests, failures leave
their variant out with a counted reason (or fail the run when nothing works), a stored
dataset's test split stays byte for byte the same, and the key is never in a message."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from tests.llm_server import LlmServer
from tuneforge.data import parquet
from tuneforge.data.augment.llm import Rewriter, cleaned, close_all, open_generators
from tuneforge.data.augment.records import augment_records
from tuneforge.data.augment.spec import LLM_METHODS, AugmentSpec
from tuneforge.data.augment.stored import augment_stored
from tuneforge.data.synthesis.generator import GenerationFailed
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore

KEY = "sk-loopback-secret-0123"


def rewritten(body: dict[str, Any]) -> str:
    """The text after the prompt's `Text:` line, reworded in a way a test can recognise: a
    translation into the pivot is marked with the language, a paraphrase or a way back with
    `~`, and upper case."""
    prompt = body["messages"][-1]["content"]
    text = prompt.split("Text:\n", 1)[1]
    into = re.match(r"Translate the text below into (\w+)", prompt)
    if into:
        return f"[{into[1]}] {text}"
    return "~" + text.removeprefix("[French] ").removeprefix("[German] ").upper()


@pytest.fixture
def server() -> Iterator[LlmServer]:
    with LlmServer(reply=rewritten, delay=0.05) as running:
        yield running


def _rows(n: int = 6, turns: int = 1) -> list[dict[str, Any]]:
    def message(role: str, text: str) -> dict[str, Any]:
        return {"role": role, "content": [{"type": "text", "text": text}]}

    rows = []
    for i in range(n):
        messages = [message("system", "You are a helpful guide.")]
        for t in range(turns):
            messages += [
                message("user", f"Tell me about river {i} part {t}."),
                message("assistant", f"River {i} is long ({t})."),
            ]
        rows.append({"messages": messages})
    return rows


def _generator(server: LlmServer, **more: Any) -> dict[str, Any]:
    return {"kind": "endpoint", "base_url": server.url, "model": "m", **more}


def _spec(server: LlmServer, methods: list[dict[str, Any]], **more: Any) -> AugmentSpec:
    for method in methods:
        if method["name"] in LLM_METHODS:
            method.setdefault("generator", _generator(server))
    return AugmentSpec.model_validate({"methods": methods, "seed": 3} | more)


def _run(
    spec: AugmentSpec, rows: list[dict[str, Any]], keys: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], Rewriter]:
    generators = open_generators(spec.llm_methods(), keys or {}, Settings(), delays=())
    try:
        rewriter = Rewriter(generators)
        return augment_records(rows, spec, rewriter=rewriter), rewriter
    finally:
        close_all(generators)


def _texts(row: dict[str, Any], role: str) -> list[str]:
    return [m["content"][0]["text"] for m in row["messages"] if m["role"] == role]


def test_paraphrase_rewrites_the_prompts_through_concurrent_requests(server) -> None:
    rows = _rows(8)
    out, rewriter = _run(_spec(server, [{"name": "paraphrase"}]), rows)
    originals, variants = out[:8], out[8:]
    assert [_texts(r, "user") for r in originals] == [_texts(r, "user") for r in rows]
    assert len(variants) == 8 and len(server.requests) == 8
    assert server.peak > 1  # four at once by default, each taking 50 ms
    for variant in variants:
        source = rows[variant["augmented_from"]]
        assert variant["augmentation"] == "paraphrase"
        assert _texts(variant, "user") == ["~" + t.upper() for t in _texts(source, "user")]
        assert _texts(variant, "assistant") == _texts(source, "assistant")  # answers kept
        assert _texts(variant, "system") == _texts(source, "system")
    assert "Rewrite the text below" in server.requests[0]["messages"][0]["content"]
    assert rewriter.requests == 8 and rewriter.prompt_tokens > 0


def test_the_seed_fixes_which_turns_are_rewritten(server) -> None:
    rows = _rows(6, turns=4)

    def rewritten_turns(seed: int) -> list[list[bool]]:
        spec = _spec(server, [{"name": "paraphrase", "probability": 0.5}], seed=seed)
        out, _ = _run(spec, rows)
        return [[t.startswith("~") for t in _texts(v, "user")] for v in out[len(rows) :]]

    first = rewritten_turns(1)
    assert first == rewritten_turns(1)
    assert first != rewritten_turns(2)
    assert all(any(turns) for turns in first)  # at least one turn of each variant
    assert not all(all(turns) for turns in first)  # about half of them


def test_back_translation_is_two_requests_through_the_pivot(server) -> None:
    spec = _spec(
        server,
        [{"name": "back_translation", "language": "German"}],
        rewrite="answers",
    )
    out, _ = _run(spec, _rows(3))
    assert len(server.requests) == 6
    firsts = [r for r in server.requests if "into German" in r["messages"][0]["content"]]
    backs = [r for r in server.requests if "German text below into English" in str(r)]
    assert len(firsts) == 3 and len(backs) == 3
    assert all("[German] River" in r["messages"][0]["content"] for r in backs)
    for variant in out[3:]:
        assert variant["augmentation"] == "back_translation"
        assert _texts(variant, "assistant")[0].startswith("~RIVER")
        assert not _texts(variant, "user")[0].startswith("~")


def test_a_failed_request_leaves_its_variant_out_counted(server) -> None:
    server.failures = [500] * 2  # the first two requests fail, with no retries here
    out, rewriter = _run(_spec(server, [{"name": "paraphrase"}]), _rows(6))
    assert len(out) == 6 + 4
    assert rewriter.skipped_variants == 2
    assert "2 variants left out because a request failed" in " ".join(rewriter.summary())
    assert "HTTP 500" in " ".join(rewriter.summary())


def test_a_model_that_stops_answering_fails_the_run(server) -> None:
    spec = _spec(server, [{"name": "paraphrase"}])
    generators = open_generators(spec.llm_methods(), {}, Settings(), delays=())
    rewriter = Rewriter(generators)
    try:
        assert len(augment_records(_rows(4), spec, rewriter=rewriter)) == 8
        server.failures = [503] * 100  # the endpoint goes down
        with pytest.raises(GenerationFailed, match=r"stopped answering after 4 useful replies"):
            augment_records(_rows(60), spec, rewriter=rewriter)
    finally:
        close_all(generators)
    assert 4 + 32 <= len(server.requests) < 4 + 60


def test_a_reply_cut_at_max_tokens_is_left_out(server) -> None:
    spec = _spec(server, [{"name": "paraphrase", "generator": _generator(server, max_tokens=3)}])
    with pytest.raises(GenerationFailed, match="cut at max_tokens"):
        _run(spec, _rows(3))  # every reply is longer than 3 words: nothing usable


def test_a_refused_key_fails_clearly_without_the_key(server) -> None:
    server.api_key = KEY
    generator = _generator(server, api_key_secret="LLM_KEY")
    spec = _spec(server, [{"name": "paraphrase", "generator": generator}])
    with pytest.raises(GenerationFailed) as refused:
        _run(spec, _rows(20), keys={"LLM_KEY": "wrong"})
    assert "refused the key" in refused.value.message and KEY not in refused.value.message
    assert len(server.requests) < 20  # it stopped sending once nothing had worked
    out, _ = _run(spec, _rows(2), keys={"LLM_KEY": KEY})
    assert len(out) == 4
    assert server.requests[-1]["authorization"] == f"Bearer {KEY}"


def test_a_stop_sends_no_more_requests(server) -> None:
    spec = _spec(server, [{"name": "paraphrase"}])
    generators = open_generators(spec.llm_methods(), {}, Settings(), delays=())
    try:
        rewriter = Rewriter(generators, should_stop=lambda: len(server.requests) >= 4)
        out = augment_records(_rows(20), spec, rewriter=rewriter)
    finally:
        close_all(generators)
    assert len(server.requests) < 10 and len(out) < 30


def test_prompts_are_checked() -> None:
    generator = {"kind": "local", "model": "gemma-3-270m"}
    with pytest.raises(ValidationError, match=r"must contain \{text\}"):
        AugmentSpec.model_validate(
            {"methods": [{"name": "paraphrase", "generator": generator, "prompt": "Say it."}]}
        )
    with pytest.raises(ValidationError, match=r"names \{lang\}"):
        AugmentSpec.model_validate(
            {
                "methods": [
                    {"name": "back_translation", "generator": generator, "prompt": "{lang} {text}"}
                ]
            }
        )
    with pytest.raises(ValidationError, match="generator"):
        AugmentSpec.model_validate({"methods": [{"name": "paraphrase"}]})
    with pytest.raises(ValueError, match="Rewriter"):
        augment_records(
            _rows(1),
            AugmentSpec.model_validate(
                {"methods": [{"name": "paraphrase", "generator": generator}]}
            ),
        )


def test_a_stored_dataset_keeps_its_test_split_and_names_the_method(
    server, library_settings: Settings
) -> None:
    store = ArtifactStore(library_settings.resolved_storage_url)
    source, target = "u/datasets/source", "u/datasets/target"
    for split, rows in (("train", _rows(5)), ("test", _rows(3))):
        parquet.write_split(
            store, parquet.split_key(source, "processed", split), pa.Table.from_pylist(rows)
        )
    spec = _spec(server, [{"name": "paraphrase"}, {"name": "swap"}], copies=2)
    generators = open_generators(spec.llm_methods(), {}, library_settings, delays=())
    try:
        fields = augment_stored(
            store,
            library_settings,
            (source, {"train": 5, "test": 3}, {"mapping": {"mode": "conversation"}}),
            target,
            spec,
            rewriter=Rewriter(generators),
        )
    finally:
        close_all(generators)
    test_key = parquet.split_key(source, "processed", "test")
    assert store.read_bytes(parquet.split_key(target, "processed", "test")) == store.read_bytes(
        test_key
    )
    train = parquet.read_split(store, parquet.split_key(target, "processed", "train")).to_pylist()
    variants = train[5:]
    assert fields["splits"]["test"] == 3 and variants
    assert {v["augmentation"] for v in variants} <= {"paraphrase", "swap"}
    paraphrased = [v for v in variants if v["augmentation"] == "paraphrase"]
    assert paraphrased and all(_texts(v, "user")[0].startswith("~") for v in paraphrased)
    assert len(server.requests) == len(paraphrased)
    assert any("requests to the model" in w for w in fields["warnings"])
    test_texts = {t for r in _rows(3) for t in _texts(r, "user")}
    assert not any("~" in t for t in test_texts)


@pytest.mark.slow
def test_a_local_model_is_asked_for_every_text(library_settings: Settings, tiny_model) -> None:
    """The tiny random model never ends a reply within 4 tokens: every reply is cut, so every
    variant is left out, counted, and the run fails saying why; all requests were answered by
    the model loaded in this process, several decoded together."""
    spec = AugmentSpec.model_validate(
        {
            "methods": [
                {
                    "name": "paraphrase",
                    "generator": {
                        "kind": "local",
                        "model": "tiny-random-gemma3",
                        "max_tokens": 4,
                        "temperature": 0,
                    },
                }
            ]
        }
    )
    generators = open_generators(spec.llm_methods(), {}, library_settings)
    try:
        rewriter = Rewriter(generators)
        with pytest.raises(GenerationFailed, match="cut at max_tokens"):
            augment_records(_rows(5), spec, rewriter=rewriter)
    finally:
        close_all(generators)
    assert rewriter.requests == 5 and rewriter.completion_tokens == 5 * 4
    assert rewriter.prompt_tokens > 5 * 20  # the whole prompt, template and text


def test_what_models_add_around_a_rewrite_is_taken_off() -> None:
    source = "How do I water ferns?"
    assert cleaned("Here is the paraphrase:\nHow should ferns be watered?", source) == (
        "How should ferns be watered?"
    )
    assert cleaned('  "How should ferns be watered?"\n', source) == "How should ferns be watered?"
    assert cleaned("```\nHow should ferns be watered?\n```", source) == (
        "How should ferns be watered?"
    )
    assert cleaned("\u201cWatering ferns: how?\u201d", source) == "Watering ferns: how?"
    # What the source itself has stays.
    quoted = '"Hello" is what she said.'
    assert cleaned('"Hi" is what she said."', quoted) == '"Hi" is what she said."'
    code = "```\nprint(1)\n```"
    assert cleaned(code, code) == code
    assert cleaned("Here is what I think of it: fine.", source) == (
        "Here is what I think of it: fine."
    )
