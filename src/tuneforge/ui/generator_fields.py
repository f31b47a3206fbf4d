"""The fields of a generator (`data.synthesis.generator.GeneratorSpec`): a TuneForge model run by
the job, or an OpenAI-compatible endpoint with the name of the secret that holds its key. Their
labels and help come from the spec's fields, like every form's."""

from __future__ import annotations

from typing import Any

from nicegui import ui

from tuneforge.data.synthesis.generator import EndpointGenerator, LocalGenerator
from tuneforge.ui.dataset_fields import blank, default, number, text

KINDS = {"endpoint": "An OpenAI-compatible API", "local": "A TuneForge model (run by the job)"}


class GeneratorFields(ui.column):
    """Choose the model that writes: `value()` is the generator as a dict for the spec."""

    def __init__(self, kind: str = "endpoint") -> None:
        super().__init__()
        self.classes("w-full gap-2 generator-fields")
        with self:
            self.kind = ui.toggle(KINDS, value=kind).props("dense no-caps")
            self.kind.classes("generator-kind")
            with ui.grid().classes("w-full gap-4 grid-cols-1 md:grid-cols-2"):
                self.base_url = text(EndpointGenerator, "base_url", None).classes("generator-url")
                self.model = text(EndpointGenerator, "model", None).classes("generator-model")
                self.key = text(EndpointGenerator, "api_key_secret", None).classes("generator-key")
                self.concurrency = number(
                    EndpointGenerator, "concurrency", default(EndpointGenerator, "concurrency")
                )
                self.temperature = number(
                    LocalGenerator,
                    "temperature",
                    default(LocalGenerator, "temperature"),
                    integer=False,
                )
                self.max_tokens = number(
                    LocalGenerator, "max_tokens", default(LocalGenerator, "max_tokens")
                )
            for endpoint_only in (self.base_url, self.key, self.concurrency):
                endpoint_only.bind_visibility_from(self.kind, "value", value="endpoint")

    def value(self) -> dict[str, Any]:
        common = {
            "kind": self.kind.value,
            "model": self.model.value,
            "temperature": self.temperature.value,
            "max_tokens": self.max_tokens.value,
        }
        if self.kind.value == "local":
            return common
        return common | {
            "base_url": self.base_url.value,
            "api_key_secret": blank(self.key.value),
            "concurrency": self.concurrency.value,
        }
