"""The real inference server (a process over its Unix socket): it says what happens before the
first token, and stops generating as soon as its client goes away, freeing the engine."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.own_loop import run_in_own_loop
from tuneforge.inference.client import InferenceClient
from tuneforge.inference.engine import Delta, Finished, Status
from tuneforge.inference.params import Generate, GenerationParams, ModelRef, Turn
from tuneforge.inference.supervisor import InferenceProcess
from tuneforge.settings import Settings

pytestmark = pytest.mark.timeout(240)
LONG = GenerationParams(temperature=1.0, max_new_tokens=8000, seed=3)


def generate(params: GenerationParams) -> Generate:
    return Generate(
        model=ModelRef(base="tiny-random-gemma3"),
        messages=[Turn(role="user", content="Tell me a very long story.")],
        params=params,
    )


async def until_idle(client: InferenceClient, within: float) -> tuple[dict, float]:
    """The server's health once no generation runs, and how long that took."""
    start = time.monotonic()
    while (health := await client.health())["generating"]:
        assert time.monotonic() - start < within, f"still generating: {health}"
        await asyncio.sleep(0.02)
    return health, time.monotonic() - start


def test_statuses_then_a_cancelled_generation_stops_and_frees_the_engine(
    library_settings: Settings,
) -> None:
    settings = library_settings  # the inference server opens no database

    async def scenario() -> None:
        client = InferenceClient(InferenceProcess(settings))
        try:
            events = client.events(generate(LONG))
            statuses: list[Status] = []
            async for event in events:
                if isinstance(event, Status):
                    statuses.append(event)
                else:
                    assert isinstance(event, Delta)
                    break
            assert [s.phase for s in statuses] == ["starting", "loading"]
            assert statuses[1].message == "Loading Tiny random Gemma 3 (tests)…"
            assert (await client.health())["generating"] == 1
            await events.aclose()  # the client goes away mid-answer
            health, took = await until_idle(client, within=1.0)
            assert health["cancelled"] == 1 and took < 1.0
            # The engine is free: the next answer is written whole, and counts as no cancel.
            _, done = await client.complete(generate(GenerationParams(max_new_tokens=5)))
            assert done.completion_tokens <= 5 and done.engine == "transformers"
            health, _ = await until_idle(client, within=1.0)  # its thread ends after its line
            assert health["cancelled"] == 1
            assert health["loads"] == {"transformers:tiny-random-gemma3": 1}
            # A loaded model says nothing before its first token.
            kinds = [
                type(e) async for e in client.events(generate(GenerationParams(max_new_tokens=2)))
            ]
            assert Status not in kinds and kinds[-1] is Finished
        finally:
            await client.close()
            client.process.stop()

    run_in_own_loop(scenario())
