"""An export speaks its base model's chat format: the Modelfile's template and stop tokens, and
the model card's instructions (Gemma 3's stay as they were)."""

from __future__ import annotations

from tuneforge.export.card import OLLAMA_TEMPLATE, CardFacts, model_card, modelfile
from tuneforge.models.chat_template import GEMMA_4


def facts(chat: str, export_format: str = "adapter", vision: bool = False) -> CardFacts:
    return CardFacts(
        name="Bot",
        base_model="gemma-4-e2b-it",
        base_name="Gemma 4 E2B IT",
        base_hub_id="google/gemma-4-E2B-it",
        license="Apache-2.0",
        dataset=None,
        spec={},
        metrics={},
        format=export_format,
        quantization=None,
        vision=vision,
        chat_format=chat,
    )


def test_a_gemma3_modelfile_is_unchanged() -> None:
    text = modelfile("bot-q8_0.gguf")
    assert f'TEMPLATE """{OLLAMA_TEMPLATE}"""' in text
    assert 'PARAMETER stop "<end_of_turn>"' in text and "<turn|>" not in text


def test_a_gemma4_modelfile_writes_gemma4_turns_and_stops_at_turn_end() -> None:
    text = modelfile("bot-q8_0.gguf", chat=GEMMA_4)
    assert "<start_of_turn>" not in text
    assert "<|turn>system\n{{ .Content }}<turn|>\n" in text
    assert text.count('PARAMETER stop "') == 2 and 'PARAMETER stop "<turn|>"' in text
    template = text.split('TEMPLATE """')[1].split('"""')[0]
    assert template.endswith(GEMMA_4.generation_prompt)


def test_model_cards_name_the_format_the_fine_tune_speaks() -> None:
    gemma4 = model_card(facts("gemma-4", vision=True))
    assert "Gemma 4's format" in gemma4 and "`<|turn>user`" in gemma4 and "`<turn|>`" in gemma4
    assert "`<|image|>`" in gemma4 and "<start_of_image>" not in gemma4
    gemma3 = model_card(facts("gemma-3"))
    assert "`<start_of_turn>user` ... `<end_of_turn>`" in gemma3 and "<|turn>" not in gemma3
