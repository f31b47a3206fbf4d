"""Sampling defaults by model kind: greedy and short for pre-trained bases and their fine-tunes,
Gemma's recommended sampling for instruction-tuned models, with a reason and a note."""

from __future__ import annotations

from tuneforge.inference.sampling import BASE_MAX_NEW_TOKENS, sampling_defaults
from tuneforge.models.catalog import catalog


def test_pretrained_bases_and_their_fine_tunes_are_greedy_and_short() -> None:
    for model_id in ("gemma-3-270m", "tiny-random-gemma3"):
        entry = catalog().get(model_id)
        base = sampling_defaults(entry)
        tuned = sampling_defaults(entry, fine_tuned=True, name="Capitals")
        for chosen in (base, tuned):
            assert chosen.kind == "pt" and chosen.params.greedy
            assert chosen.params.max_new_tokens == BASE_MAX_NEW_TOKENS
            assert "greedy" in chosen.reason
        assert base.note is not None and "continues text" in base.note and "-it" in base.note
        assert tuned.note is None and "Capitals" in tuned.reason


def test_instruction_tuned_models_get_gemmas_recommended_sampling() -> None:
    entry = catalog().get("gemma-3-270m-it")
    assert entry is not None and entry.variant == "it"
    for chosen in (sampling_defaults(entry), sampling_defaults(entry, fine_tuned=True)):
        params = chosen.params
        assert chosen.kind == "it" and not params.greedy and chosen.note is None
        assert (params.temperature, params.top_p, params.top_k) == (1.0, 0.95, 64)
        assert "recommended" in chosen.reason
    assert sampling_defaults(None).kind == "it"  # an unknown base: the usual defaults
