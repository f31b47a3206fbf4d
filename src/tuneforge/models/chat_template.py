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
in the position inference puts it in. Audio and thinking are not written.

Tools (`tools=`, OpenAI's definitions) are declared in a turn of their own before the
conversation, after the system prompt: Gemma 3 writes FunctionGemma's `developer` turn (with
tools, its system prompt is not folded into the first user turn), Gemma 4 its system turn. An
assistant message that calls tools writes its text, then each call, then the response marker,
where generation stops; each tool's result follows in the same model turn, and the next
assistant message goes on after it:

    <start_of_turn>model
    <start_function_call>call:get_weather{city:<escape>Oslo<escape>}<end_function_call>
    <start_function_response>response:get_weather{value:<escape>-3<escape>}<end_function_response>
    It is -3 in Oslo.<end_of_turn>

(one line in the real text; `tuneforge.models.tool_format` writes and parses the notation).

In both, the assistant speaks as `model`, each text part is stripped of surrounding whitespace,
and after an optional system message user and assistant take turns, starting with the user. The
GGUF of Gemma 3 270M carries no template, so a format's `jinja` is attached to tokenizers saved
for training and export; a test checks that transformers renders each byte for byte like `render`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tuneforge.models.tool_format import (
    FUNCTION_GEMMA_MARKERS,
    GEMMA_4_MARKERS,
    ToolDefinition,
    ToolMarkers,
    call_text,
    declaration,
    jinja_macros,
    response_text,
)

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

_TEMPLATE = (
    "@TOOL_MACROS@"
    "{%- macro strip_thinking(text) -%}"
    "{%- set ns = namespace(kept='') -%}"
    "{%- for piece in text.split('<channel|>') -%}"
    "{%- set ns.kept = ns.kept + piece.split('<|channel>')[0] -%}"
    "{%- endfor -%}"
    "{{ ns.kept | trim }}"
    "{%- endmacro -%}"
    "{%- macro render_text(text, role) -%}"
    "{%- if @STRIPS@ and role == 'model' -%}{{ strip_thinking(text) }}"
    "{%- else -%}{{ text | trim }}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- macro render_content(content, role) -%}"
    "{%- if content is none -%}"
    "{%- elif content is string -%}{{ render_text(content, role) }}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part['type'] == 'image' -%}{{ '@IMAGE@' }}"
    "{%- elif part['type'] == 'text' -%}{{ render_text(part['text'], role) }}"
    "{%- else -%}{{ raise_exception('Unknown content part type: ' + part['type']) }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{{ bos_token }}"
    "{%- set ns = namespace(prefix='', state='user') -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = render_content(messages[0]['content'], 'system') -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system = none -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- if tools -%}"
    "{{ '@SOT@@TOOLS_ROLE@\n' + (system if system is not none else '') }}"
    "{%- for tool in tools -%}{{ tool_declaration(tool) }}{%- endfor -%}"
    "{{ '@EOT@\n' }}"
    "{%- elif system is not none -%}"
    "{%- if @SYSTEM_TURN@ -%}{{ '@SOT@system\n' + system + '@EOT@\n' }}"
    "{%- else -%}{%- set ns.prefix = system + '\n\n' -%}{%- endif -%}"
    "{%- endif -%}"
    "{%- if not loop_messages -%}"
    "{{ raise_exception('The conversation has no user message.') }}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'tool' -%}"
    "{%- if ns.state not in ['results', 'continued'] -%}"
    "{{ raise_exception('A tool result must follow an assistant message with tool calls.') }}"
    "{%- endif -%}"
    "{%- if ns.state == 'continued' -%}{{ '@RESPONSE@' }}{%- endif -%}"
    "{{ 'response:' + message['name'] + '{value:@STRING@' }}"
    "{{ render_content(message['content'], 'tool') + '@STRING@}@RESPONSE_END@' }}"
    "{%- set ns.state = 'continued' -%}"
    "{%- else -%}"
    "{%- if ns.state == 'results' -%}"
    "{{ raise_exception('Tool calls must be followed by their results.') }}"
    "{%- endif -%}"
    "{%- if message['role'] != ('user' if ns.state == 'user' else 'assistant') -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{ '@SOT@user\n' + (ns.prefix if loop.first else '') }}"
    "{{ render_content(message['content'], 'user') + '@EOT@\n' }}"
    "{%- set ns.state = 'assistant' -%}"
    "{%- else -%}"
    "{%- if ns.state == 'assistant' -%}{{ '@SOT@model\n' }}{%- endif -%}"
    "{{ render_content(message['content'], 'model') }}"
    "{%- if message.get('tool_calls') -%}"
    "{%- for call in message['tool_calls'] -%}{{ tool_call(call) }}{%- endfor -%}"
    "{{ '@RESPONSE@' }}{%- set ns.state = 'results' -%}"
    "{%- else -%}"
    "{{ '@EOT@\n' }}{%- set ns.state = 'user' -%}"
    "{%- endif -%}"
    "{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt and ns.state in ['user', 'assistant'] -%}"
    "{{ '@GENERATION_PROMPT@' }}"
    "{%- endif -%}"
)


def _jinja(
    markers: ToolMarkers,
    *,
    start_of_turn: str,
    end_of_turn: str,
    image: str,
    generation_prompt: str,
    system_turn: bool,
    strips_thinking: bool,
) -> str:
    """The Jinja template of a format: it renders like `ChatFormat.render`, tools included."""
    values = {
        "@TOOL_MACROS@": jinja_macros(markers),
        "@STRIPS@": str(strips_thinking).lower(),
        "@SYSTEM_TURN@": str(system_turn).lower(),
        "@TOOLS_ROLE@": markers.role,
        "@SOT@": start_of_turn,
        "@EOT@": end_of_turn,
        "@IMAGE@": image.replace("\n", "\\n"),
        "@GENERATION_PROMPT@": generation_prompt.replace("\n", "\\n"),
        "@RESPONSE@": markers.response[0],
        "@RESPONSE_END@": markers.response[1],
        "@STRING@": markers.string.replace("'", "\\'"),
    }
    template = _TEMPLATE
    for placeholder, value in values.items():
        template = template.replace(placeholder, value)
    return template


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
    #: How tools are declared, called and answered (`tuneforge.models.tool_format`).
    tool_markers: ToolMarkers
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

    def _open(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolDefinition] | None
    ) -> tuple[str, str, Sequence[ChatMessage]]:
        """The turns before the conversation proper, the prefix of the first user turn, and
        the messages left: Gemma 3 folds the system prompt into the first user turn, Gemma 4
        gives it a turn of its own; with tools, the declarations follow the system prompt in
        the tools' turn (Gemma 3: `developer`, as FunctionGemma; Gemma 4: `system`)."""
        system = None
        if messages and messages[0]["role"] == "system":
            system = self.render_content(messages[0]["content"])
            messages = messages[1:]
        if tools:
            markers = self.tool_markers
            declared = "".join(declaration(tool, markers) for tool in tools)
            head = f"{self.start_of_turn}{markers.role}\n{system or ''}{declared}"
            return f"{head}{self.end_of_turn}\n", "", messages
        if system is None:
            return "", "", messages
        if self.system_turn:
            return f"{self.start_of_turn}system\n{system}{self.end_of_turn}\n", "", messages
        return "", system + "\n\n", messages

    def _body(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolDefinition] | None
    ) -> tuple[str, bool]:
        """The conversation without `<bos>`, the order of roles checked, and whether a
        generation prompt may follow it (after a user's or a model's turn; after a tool's
        result the model goes on in its own turn, and after a call it waits for the result).
        An assistant message with tool calls ends with the response marker, where generation
        stops; the tools' results follow in the same model turn, and so does the next
        assistant message."""
        head, prefix, rest = self._open(messages, tools)
        offset = len(messages) - len(rest)
        if not rest:
            raise ValueError("The conversation has no user message.")
        pieces = [head]
        state = "user"  # what comes next: user, assistant, results (after calls), continued
        for index, msg in enumerate(rest):
            role, number = msg["role"], index + offset + 1
            if role == "tool":
                if state not in ("results", "continued"):
                    raise ValueError(
                        f"Message {number} is a tool's result, but no assistant message with "
                        "tool calls comes before it."
                    )
                opening = "" if state == "results" else self.tool_markers.response[0]
                name = msg.get("name")
                if not isinstance(name, str) or not name:
                    raise ValueError(f"Message {number} (a tool's result) has no tool name.")
                result = self.render_content(msg["content"] or "")
                pieces.append(opening + response_text(name, result, self.tool_markers))
                state = "continued"
                continue
            expected = "user" if state == "user" else "assistant"
            if role != expected or (state == "results" and role == "assistant"):
                if state == "results":
                    raise ValueError(
                        f"Message {number - 1} calls tools, but no tool result follows it."
                    )
                raise ValueError(
                    f"Message {number} has role {role!r} where Gemma expects {expected!r}: "
                    "after an optional system message, a conversation starts with a user turn "
                    "and then user and assistant take turns."
                )
            if role == "user":
                text = self.render_content(msg["content"])
                pieces.append(f"{self.start_of_turn}user\n{prefix if index == 0 else ''}{text}")
                pieces.append(f"{self.end_of_turn}\n")
                state = "assistant"
                continue
            if state == "assistant":
                pieces.append(f"{self.start_of_turn}model\n")
            pieces.append(self.render_answer(msg["content"], msg.get("tool_calls")))
            state = "results" if msg.get("tool_calls") else "user"
        return "".join(pieces), state in ("user", "assistant")

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolDefinition] | None = None,
        add_generation_prompt: bool = False,
        bos: bool = True,
    ) -> str:
        """The conversation in this format; raises ValueError when roles are out of order.
        `tools`: the tools the model may call (OpenAI's definitions). The generation prompt
        is not added after a tool's result: the model goes on in the same turn."""
        body, asks = self._body(messages, tools)
        prompt = self.generation_prompt if add_generation_prompt and asks else ""
        return f"{self.bos if bos else ''}{body}{prompt}"

    def render_answer(
        self,
        content: str | Sequence[Mapping[str, Any]] | None,
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """An answer as it is trained: its text and the end of its turn (`<end_of_turn>\\n`);
        an answer that calls tools: its text, the calls and the response marker that stops
        generation."""
        text = self.render_content(content or "", answer=True)
        if tool_calls:
            calls = "".join(call_text(call, self.tool_markers) for call in tool_calls)
            return f"{text}{calls}{self.tool_markers.response[0]}"
        return f"{text}{self.end_of_turn}\n"

    def prompt_and_answer(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolDefinition] | None = None,
        bos: bool = True,
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
        prompt = self.render(messages[:-1], tools=tools, add_generation_prompt=True, bos=bos)
        last = messages[-1]
        return prompt, self.render_answer(last["content"], last.get("tool_calls"))


def _format(
    name: ChatFormatName,
    *,
    start_of_turn: str,
    end_of_turn: str,
    image_placeholder: str,
    generation_prompt: str,
    system_turn: bool,
    markers: ToolMarkers,
) -> ChatFormat:
    jinja = _jinja(
        markers,
        start_of_turn=start_of_turn,
        end_of_turn=end_of_turn,
        image=image_placeholder,
        generation_prompt=generation_prompt,
        system_turn=system_turn,
        strips_thinking=system_turn,
    )
    return ChatFormat(
        name=name,
        bos=BOS,
        start_of_turn=start_of_turn,
        end_of_turn=end_of_turn,
        image_placeholder=image_placeholder,
        generation_prompt=generation_prompt,
        stop_tokens=(end_of_turn, EOS),
        system_turn=system_turn,
        strips_thinking=system_turn,
        tool_markers=markers,
        jinja=jinja,
    )


GEMMA_3 = _format(
    "gemma-3",
    start_of_turn=START_OF_TURN,
    end_of_turn=END_OF_TURN,
    image_placeholder=START_OF_IMAGE,
    generation_prompt=GENERATION_PROMPT,
    system_turn=False,
    markers=FUNCTION_GEMMA_MARKERS,
)
GEMMA_4 = _format(
    "gemma-4",
    start_of_turn=TURN,
    end_of_turn=TURN_END,
    image_placeholder=f"\n\n{IMAGE}\n\n",
    generation_prompt=f"{TURN}model\n{CHANNEL}thought\n{CHANNEL_END}",
    system_turn=True,
    markers=GEMMA_4_MARKERS,
)
#: Gemma 3's template, attached to the tokenizers TuneForge builds.
GEMMA_CHAT_TEMPLATE = GEMMA_3.jinja
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
    messages: Sequence[ChatMessage],
    *,
    tools: Sequence[ToolDefinition] | None = None,
    add_generation_prompt: bool = False,
    bos: bool = True,
) -> str:
    """The conversation in Gemma 3's format; raises ValueError when roles are out of order."""
    return GEMMA_3.render(
        messages, tools=tools, add_generation_prompt=add_generation_prompt, bos=bos
    )


def prompt_and_answer(
    messages: Sequence[ChatMessage],
    *,
    tools: Sequence[ToolDefinition] | None = None,
    bos: bool = True,
) -> tuple[str, str]:
    """Gemma 3's prompt (up to and including the final `<start_of_turn>model\\n`) and final
    answer (its text and `<end_of_turn>\\n`); their concatenation is `render(messages)`."""
    return GEMMA_3.prompt_and_answer(messages, tools=tools, bos=bos)
