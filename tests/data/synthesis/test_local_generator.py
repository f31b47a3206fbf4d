"""The local generator: a TuneForge model loaded in this process (tiny-random-gemma3), its
requests from several threads decoded together."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.data.synthesis.generator import (
    Completion,
    GenerationFailed,
    LocalGenerator,
    complete_all,
    open_generator,
)
from tuneforge.settings import Settings


@pytest.mark.slow
def test_a_local_model_completes_requests_in_batches(
    library_settings: Settings, tiny_model: Path
) -> None:
    spec = LocalGenerator(model="tiny-random-gemma3", temperature=0.0, max_tokens=6)
    generator = open_generator(spec, api_key=None, settings=library_settings)
    results: dict[int, Completion | GenerationFailed] = {}
    chats = [
        [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hi!"}],
        [{"role": "user", "content": "Write a question about pumps."}],
        [{"role": "user", "content": "Hi!"}],
    ]
    try:
        assert generator.concurrency > 1
        complete_all(generator, chats, results.__setitem__)
        alone = generator.complete(chats[2])
    finally:
        generator.close()
    assert sorted(results) == [0, 1, 2]
    for result in results.values():
        assert isinstance(result, Completion)
        assert 1 <= result.completion_tokens <= 6 and result.prompt_tokens > 3
    assert isinstance(results[2], Completion)
    assert alone.text == results[2].text  # greedy: the same answer alone or in a batch
    with pytest.raises(GenerationFailed, match="closed"):
        generator.complete(chats[2])
    bad = [{"role": "assistant", "content": "no user turn before me"}]
    generator = open_generator(spec, api_key=None, settings=library_settings)
    try:
        with pytest.raises(GenerationFailed, match="cannot be rendered"):
            generator.complete(bad)
    finally:
        generator.close()
