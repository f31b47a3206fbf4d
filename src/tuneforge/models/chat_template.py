"""Gemma's chat formats, as code and as the equivalent Jinja strings.

Gemma 3 (`GEMMA_3`, the default wherever no model is involved: dataset previews, statistics and
processing render it) writes

    <bos><start_of_turn>user
    {system}

    {user}<end_of_turn>
    <start_of_turn>model
    {answer}<end_of_turn>

Gemma 3 has no system role: the system prompt is folded into the first user turn. An image part
becomes `<start_of_image>`, as in Google's official Gemma 3 template (the processor later expands
it into the image's soft tokens).

Gemma 4 (`GEMMA_4`) has its own control tokens and a real system turn:

    <bos><|turn>system
    {system}<turn|>
    <|turn>user
    {user}<turn|>
    <|turn>model
    {answer}<turn|>

An image part becomes `\\n\\n<|image|>\\n\\n` (the processor expands `<|image|>` into the image's
own number of soft tokens between `<|image>` and `<image|>`), and an answer in the history loses
any thinking (`<|channel>...<channel|>`), as in Google's official template. With thinking off, the
prompt for a new answer ends with an empty thought channel, `<|turn>model\\n<|channel>thought\\n
<channel|>`; TuneForge trains the final answer after exactly that prompt, so a fine-tune answers
in the position inference puts it in. Tools, audio and thinking are not written.

In both, the assistant speaks as `model`, each text part is stripped of surrounding whitespace,
and after an optional system message user and assistant take turns, starting with the user. The
GGUF of Gemma 3 270M carries no template, so a format's `jinja` is attached to tokenizers saved
for training and export; a test checks that transformers renders each byte for byte like `render`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

#: A message: `{"role": ..., "content": [part, ...] | str}` (see `tuneforge.data.conversation`).
ChatMessage = Mapping[str, Any]
ChatFormatName = Literal["gemma-3", "gemma-4"]

BOS = "<bos>"
EOS = "<eos>"
START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"
START_OF_IMAGE = "<start_of_image>"
GENERATION_PROMPT = f"{START_OF_TURN}model\n"

TURN = "<|turn>"
TURN_END = "<turn|>"
IMAGE = "<|image|>"
CHANNEL = "<|channel>"
CHANNEL_END = "<channel|>"

GEMMA_CHAT_TEMPLATE = (
    "{%- macro render_content(content) -%}"
    "{%- if content is string -%}{{ content | trim }}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part['type'] == 'image' -%}<start_of_image>"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] | trim }}"
    "{%- else -%}{{ raise_exception('Unknown content part type: ' + part['type']) }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = render_content(messages[0]['content']) + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- if not loop_messages -%}"
    "{{ raise_exception('The conversation has no user message.') }}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] != ('user' if loop.index0 % 2 == 0 else 'assistant') -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ render_content(message['content']) }}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

GEMMA_4_CHAT_TEMPLATE = (
    "{%- macro strip_thinking(text) -%}"
    "{%- set ns = namespace(kept='') -%}"
    "{%- for piece in text.split('<channel|>') -%}"
    "{%- set ns.kept = ns.kept + piece.split('<|channel>')[0] -%}"
    "{%- endfor -%}"
    "{{ ns.kept | trim }}"
    "{%- endmacro -%}"
    "{%- macro render_text(text, role) -%}"
    "{%- if role == 'model' -%}{{ strip_thinking(text) }}{%- else -%}{{ text | trim }}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- macro render_content(content, role) -%}"
    "{%- if content is string -%}{{ render_text(content, role) }}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part['type'] == 'image' -%}{{ '\n\n<|image|>\n\n' }}"
    "{%- elif part['type'] == 'text' -%}{{ render_text(part['text'], role) }}"
    "{%- else -%}{{ raise_exception('Unknown content part type: ' + part['type']) }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{ '<|turn>system\n' + render_content(messages[0]['content'], 'system') + '<turn|>\n' }}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- if not loop_messages -%}"
    "{{ raise_exception('The conversation has no user message.') }}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] != ('user' if loop.index0 % 2 == 0 else 'assistant') -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<|turn>' + role + '\n' }}"
    "{{ render_content(message['content'], role) }}"
    "{{ '<turn|>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|turn>model\n<|channel>thought\n<channel|>' }}"
    "{%- endif -%}"
)


def _strip_thinking(text: str) -> str:
    """An answer without its thinking: what lies between `<|channel>` and `<channel|>` goes."""
    return "".join(piece.split(CHANNEL)[0] for piece in text.split(CHANNEL_END)).strip()


@dataclass(frozen=True)
class ChatFormat:
    """One model family's chat format: its markers, its Jinja template and its renderer."""

    name: ChatFormatName
    bos: str
    start_of_turn: str
    end_of_turn: str
    #: What the template writes for an image part (the processor expands it into soft tokens).
    image_placeholder: str
    #: The prompt's end that asks the model for an answer.
    generation_prompt: str
    #: Tokens where generation stops.
    stop_tokens: tuple[str, ...]
    #: A real system turn (Gemma 4) rather than a prefix of the first user turn (Gemma 3).
    system_turn: bool
    #: Answers in the history lose their thinking (`<|channel>...<channel|>`).
    strips_thinking: bool
    #: The Jinja template attached to saved tokenizers; renders like `render`.
    jinja: str

    @property
    def control_tokens(self) -> tuple[str, ...]:
        """The markers a rendering of this format contains (for highlighting and checks)."""
        return (self.bos, self.start_of_turn, self.end_of_turn, self.image_placeholder)

    def render_content(
        self, content: str | Sequence[Mapping[str, Any]], *, answer: bool = False
    ) -> str:
        """A message's content as the model sees it: stripped texts, images as the format's
        placeholder; an `answer`'s texts lose their thinking where the format says so."""
        strip = _strip_thinking if answer and self.strips_thinking else str.strip
        if isinstance(content, str):
            return strip(content)
        pieces = []
        for part in content:
            if part["type"] == "image":
                pieces.append(self.image_placeholder)
            elif part["type"] == "text":
                pieces.append(strip(part["text"]))
            else:
                raise ValueError(f"Unknown content part type {part['type']!r}.")
        return "".join(pieces)

    def _turns(self, messages: Sequence[ChatMessage]) -> list[tuple[str, str]]:
        """`(role, text)` per turn, the role order checked; Gemma 3 folds the system prompt into
        the first user turn, Gemma 4 gives it a turn of its own."""
        prefix, offset, turns = "", 0, []
        if messages and messages[0]["role"] == "system":
            system = self.render_content(messages[0]["content"])
            offset = 1
            if self.system_turn:
                turns.append(("system", system))
            else:
                prefix = system + "\n\n"
        spoken = []
        for index, msg in enumerate(messages[offset:]):
            expected = "user" if index % 2 == 0 else "assistant"
            if msg["role"] != expected:
                raise ValueError(
                    f"Message {index + offset + 1} has role {msg['role']!r} where Gemma expects "
                    f"{expected!r}: after an optional system message, a conversation starts with "
                    "a user turn and then user and assistant take turns."
                )
            text = self.render_content(msg["content"], answer=expected == "assistant")
            spoken.append(
                (
                    "model" if expected == "assistant" else "user",
                    prefix + text if index == 0 else text,
                )
            )
        if not spoken:
            raise ValueError("The conversation has no user message.")
        return turns + spoken

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = False,
        bos: bool = True,
    ) -> str:
        """The conversation in this format; raises ValueError when roles are out of order."""
        pieces = [self.bos] if bos else []
        pieces += [
            f"{self.start_of_turn}{role}\n{text}{self.end_of_turn}\n"
            for role, text in self._turns(messages)
        ]
        if add_generation_prompt:
            pieces.append(self.generation_prompt)
        return "".join(pieces)

    def render_answer(self, content: str | Sequence[Mapping[str, Any]]) -> str:
        """An answer as it is trained: its text and the end of its turn (`<end_of_turn>\\n`)."""
        return f"{self.render_content(content, answer=True)}{self.end_of_turn}\n"

    def prompt_and_answer(
        self, messages: Sequence[ChatMessage], *, bos: bool = True
    ) -> tuple[str, str]:
        """The prompt for the final answer (the history and the generation prompt, exactly what
        inference sends) and that answer (its text and the end of its turn with its newline).
        For Gemma 3 their concatenation is `render(messages)`; Gemma 4's generation prompt adds
        the empty thought channel that a rendered history leaves out. Training with loss on
        answers puts loss on the second part only."""
        if not messages or messages[-1]["role"] != "assistant":
            raise ValueError(
                "The conversation must end with an assistant message to have an answer."
            )
        prompt = self.render(messages[:-1], add_generation_prompt=True, bos=bos)
        return prompt, self.render_answer(messages[-1]["content"])


GEMMA_3 = ChatFormat(
    name="gemma-3",
    bos=BOS,
    start_of_turn=START_OF_TURN,
    end_of_turn=END_OF_TURN,
    image_placeholder=START_OF_IMAGE,
    generation_prompt=GENERATION_PROMPT,
    stop_tokens=(END_OF_TURN, EOS),
    system_turn=False,
    strips_thinking=False,
    jinja=GEMMA_CHAT_TEMPLATE,
)
GEMMA_4 = ChatFormat(
    name="gemma-4",
    bos=BOS,
    start_of_turn=TURN,
    end_of_turn=TURN_END,
    image_placeholder=f"\n\n{IMAGE}\n\n",
    generation_prompt=f"{TURN}model\n{CHANNEL}thought\n{CHANNEL_END}",
    stop_tokens=(TURN_END, EOS),
    system_turn=True,
    strips_thinking=True,
    jinja=GEMMA_4_CHAT_TEMPLATE,
)
FORMATS: dict[str, ChatFormat] = {f.name: f for f in (GEMMA_3, GEMMA_4)}


def chat_format(name: str | None) -> ChatFormat:
    """The chat format called `name` (`gemma-3`, `gemma-4`); None is Gemma 3, the default."""
    if name is None:
        return GEMMA_3
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(
            f"Unknown chat format {name!r}; TuneForge writes {', '.join(sorted(FORMATS))}."
        ) from None


def format_of(model: Any) -> ChatFormat:
    """The chat format of a catalog entry (its `chat_format`), or of a model's `config.json`
    contents, `model_type` or hub id (`gemma4...`, `.../gemma-4-...`: Gemma 4); Gemma 3
    otherwise."""
    if model is None:
        return GEMMA_3
    name = getattr(model, "chat_format", None)
    if isinstance(name, str):
        return chat_format(name)
    if isinstance(model, Mapping):
        model = model.get("model_type") or ""
    text = model.lower() if isinstance(model, str) else ""
    return GEMMA_4 if "gemma4" in text or "gemma-4" in text else GEMMA_3


def format_of_tokenizer(tokenizer: Any) -> ChatFormat:
    """The chat format a tokenizer speaks: Gemma 4's when it has `<|turn>` and `<turn|>` as
    tokens (a `tokenizers.Tokenizer` or a transformers tokenizer), Gemma 3's otherwise. Code that
    holds a model's tokenizer asks here, so it renders the model's own format."""
    if hasattr(tokenizer, "token_to_id"):
        found = [tokenizer.token_to_id(token) for token in (TURN, TURN_END)]
        return GEMMA_4 if None not in found else GEMMA_3
    ids = tokenizer.convert_tokens_to_ids([TURN, TURN_END])
    unknown = (None, getattr(tokenizer, "unk_token_id", None))
    return GEMMA_4 if all(i not in unknown for i in ids) else GEMMA_3


def render_content(content: str | Sequence[Mapping[str, Any]]) -> str:
    """A message's content in Gemma 3's format: stripped texts, images as `<start_of_image>`."""
    return GEMMA_3.render_content(content)


def render(
    messages: Sequence[ChatMessage], *, add_generation_prompt: bool = False, bos: bool = True
) -> str:
    """The conversation in Gemma 3's format; raises ValueError when roles are out of order."""
    return GEMMA_3.render(messages, add_generation_prompt=add_generation_prompt, bos=bos)


def prompt_and_answer(messages: Sequence[ChatMessage], *, bos: bool = True) -> tuple[str, str]:
    """Gemma 3's prompt (up to and including the final `<start_of_turn>model\\n`) and final
    answer (its text and `<end_of_turn>\\n`); their concatenation is `render(messages)`."""
    return GEMMA_3.prompt_and_answer(messages, bos=bos)
