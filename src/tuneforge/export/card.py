"""The texts an export carries: the model card (README.md) and Ollama's Modelfile."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tuneforge.export.spec import FORMAT_HELP
from tuneforge.models.chat_template import GEMMA_3, GEMMA_4, ChatFormat, chat_format

#: Gemma 3's conversation format as an Ollama (Go) template: the system prompt is folded into the
#: first user turn, the assistant speaks as `model`, every turn ends with `<end_of_turn>`. The
#: `<bos>` token comes from the GGUF's tokenizer (add_bos_token).
OLLAMA_TEMPLATE = """{{- $system := "" }}
{{- range .Messages }}{{ if eq .Role "system" }}{{ $system = .Content }}{{ end }}{{ end }}
{{- $first := true }}
{{- range .Messages }}
{{- if eq .Role "user" }}<start_of_turn>user
{{ if and $first $system }}{{ $system }}

{{ end }}{{ .Content }}<end_of_turn>
{{ $first = false }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}<end_of_turn>
{{ end }}
{{- end }}<start_of_turn>model
"""
#: Gemma 4's: a system turn of its own, `<|turn>`/`<turn|>`, and the prompt for an answer ends
#: with the empty thought channel (thinking off), as TuneForge trains and chats.
OLLAMA_TEMPLATE_GEMMA_4 = """{{- range .Messages }}
{{- if eq .Role "system" }}<|turn>system
{{ .Content }}<turn|>
{{ else if eq .Role "user" }}<|turn>user
{{ .Content }}<turn|>
{{ else if eq .Role "assistant" }}<|turn>model
{{ .Content }}<turn|>
{{ end }}
{{- end }}<|turn>model
<|channel>thought
<channel|>"""
OLLAMA_TEMPLATES = {GEMMA_3.name: OLLAMA_TEMPLATE, GEMMA_4.name: OLLAMA_TEMPLATE_GEMMA_4}
#: Gemma's recommended sampling, as in the Playground.
OLLAMA_PARAMETERS = (("temperature", "1"), ("top_k", "64"), ("top_p", "0.95"))
STOP_TOKENS = GEMMA_3.stop_tokens


@dataclass(frozen=True)
class CardFacts:
    """What the model card says about the fine-tune."""

    name: str
    base_model: str
    base_name: str
    base_hub_id: str | None
    license: str
    dataset: str | None
    spec: dict[str, Any]
    metrics: dict[str, float]
    format: str
    quantization: str | None
    files: list[str] = field(default_factory=list)
    #: A model that reads images (its exports carry the image processor, or a projector).
    vision: bool = False
    #: The base model's chat format (`gemma-3`, `gemma-4`), which the fine-tune speaks.
    chat_format: str = GEMMA_3.name


def ollama_name(name: str) -> str:
    """A name `ollama create` accepts: lower case letters, digits, `-`, `_` and `.`."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower())
    return re.sub(r"-{2,}", "-", cleaned).strip("-.") or "tuneforge-model"


def modelfile(gguf_name: str, projector_name: str | None = None, chat: ChatFormat = GEMMA_3) -> str:
    """Ollama's Modelfile for the GGUF file `gguf_name` in the same directory, speaking the
    chat format `chat`; a vision model's projector (`projector_name`) is a second `FROM` line,
    which `ollama create` stores as the model's projector layer (it recognises the file by its
    `clip` architecture)."""
    lines = [f"FROM ./{gguf_name}"]
    if projector_name:
        lines.append(f"FROM ./{projector_name}")
    lines.append(f'TEMPLATE """{OLLAMA_TEMPLATES[chat.name]}"""')
    lines += [f'PARAMETER stop "{token}"' for token in chat.stop_tokens]
    lines += [f"PARAMETER {key} {value}" for key, value in OLLAMA_PARAMETERS]
    return "\n".join(lines) + "\n"


def _usage(facts: CardFacts) -> str:
    base = facts.base_hub_id or facts.base_model
    ggufs = [f for f in facts.files if f.endswith(".gguf")]
    gguf = next((f for f in ggufs if not f.startswith("mmproj")), "model.gguf")
    projector = next((f for f in ggufs if f.startswith("mmproj")), None)
    if projector is not None:
        return _vision_gguf_usage(facts, gguf, projector)
    if facts.vision and facts.format in ("adapter", "merged"):
        return _vision_usage(facts, base)
    if facts.format == "adapter":
        return (
            "```python\nfrom peft import PeftModel\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'base = AutoModelForCausalLM.from_pretrained("{base}")\n'
            'model = PeftModel.from_pretrained(base, "path/to/this/folder")\n'
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")\n```\n'
        )
    if facts.format == "merged":
        return (
            "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")\n'
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")\n```\n\n'
            "vLLM: `vllm serve path/to/this/folder`\n"
        )
    if facts.format == "ollama":
        return (
            "In this folder:\n\n```sh\n"
            f"ollama create {ollama_name(facts.name)} -f Modelfile\n"
            f"ollama run {ollama_name(facts.name)}\n```\n"
        )
    return (
        f"```sh\nllama-cli -m {gguf} -cnv\nllama-server -m {gguf}\n```\n\n"
        "The GGUF carries the tokenizer and Gemma's chat template.\n"
    )


def _vision_usage(facts: CardFacts, base: str) -> str:
    load = (
        f'base = AutoModelForImageTextToText.from_pretrained("{base}")\n'
        'model = PeftModel.from_pretrained(base, "path/to/this/folder")\n'
        if facts.format == "adapter"
        else 'model = AutoModelForImageTextToText.from_pretrained("path/to/this/folder")\n'
    )
    peft = "from peft import PeftModel\n" if facts.format == "adapter" else ""
    return (
        f"```python\n{peft}from transformers import AutoModelForImageTextToText, "
        f"AutoProcessor\n\n{load}"
        'processor = AutoProcessor.from_pretrained("path/to/this/folder")\n```\n\n'
        "A vision model: the processor (tokenizer and image processor, both in this folder) "
        f"turns each `{_image_token(facts)}` of a prompt and its image into the model's "
        "inputs.\n"
    )


def _vision_gguf_usage(facts: CardFacts, gguf: str, projector: str) -> str:
    ollama = ""
    if facts.format == "ollama":
        ollama = (
            "Ollama (the Modelfile names both files):\n\n```sh\n"
            f"ollama create {ollama_name(facts.name)} -f Modelfile\n```\n\n"
            "Ollama versions that run Gemma 3 on their own engine may ignore a separate "
            "projector file (ollama/ollama#9967); llama.cpp below always uses it.\n\n"
        )
    return (
        f"{ollama}Two files: `{gguf}` (the language model) and `{projector}` (the image "
        "encoder and projector). llama.cpp:\n\n"
        f"```sh\nllama-mtmd-cli -m {gguf} --mmproj {projector} --image picture.png "
        '-p "Describe this image."\n'
        f"llama-server -m {gguf} --mmproj {projector}\n```\n\n"
        "The GGUF carries the tokenizer and Gemma's chat template.\n"
    )


def _image_token(facts: CardFacts) -> str:
    return chat_format(facts.chat_format).image_placeholder.strip()


def _conversations(facts: CardFacts) -> str:
    """How a conversation is written for the fine-tune: its base model's chat format."""
    if facts.chat_format == GEMMA_4.name:
        return (
            "Conversations use Gemma 4's format: an optional `<|turn>system` turn, "
            "`<|turn>user` ... `<turn|>`, then `<|turn>model` followed by the empty thought "
            "channel `<|channel>thought\\n<channel|>` (thinking off, as it was trained); stop "
            "at `<turn|>`. The tokenizer's chat template (`chat_template.jinja`) writes it."
        )
    return (
        "Conversations use Gemma's format: `<start_of_turn>user` ... `<end_of_turn>`, then "
        "`<start_of_turn>model`; stop at `<end_of_turn>`."
    )


def model_card(facts: CardFacts) -> str:
    """README.md: what the model is, how it was made, how well it did, how to load it."""
    variant = facts.format + (f" ({facts.quantization})" if facts.quantization else "")
    metrics = "\n".join(f"| {k} | {v:.4g} |" for k, v in sorted(facts.metrics.items()))
    settings = json.dumps(facts.spec, indent=2, sort_keys=True)
    files = "\n".join(f"- `{name}`" for name in facts.files)
    return (
        f"---\nbase_model: {facts.base_hub_id or facts.base_model}\nlicense: gemma\n"
        f"tags:\n- gemma\n- tuneforge\n- {facts.format}\n---\n\n"
        f"# {facts.name}\n\n"
        f"A fine-tune of {facts.base_name} (`{facts.base_model}`) made with TuneForge"
        + (f" on the dataset {facts.dataset!r}" if facts.dataset else "")
        + f". Exported as {variant}: {FORMAT_HELP[facts.format]}\n\n"
        f"Licence: the base model's ({facts.license}).\n\n"
        "## How to use it\n\n"
        f"{_usage(facts)}\n"
        f"{_conversations(facts)}\n\n"
        "## Metrics\n\n"
        + (f"| metric | value |\n|---|---|\n{metrics}\n\n" if metrics else "None recorded.\n\n")
        + f"## Training settings\n\n```json\n{settings}\n```\n\n## Files\n\n{files}\n"
    )
