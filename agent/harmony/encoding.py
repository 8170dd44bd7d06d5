"""The harmony encoding and conversation building.

openai-harmony does all rendering and tokenizing; this module only decides
*what* to render: the system message (reasoning effort, date, built-in tools),
the developer message (instructions, function tools), and the token-level
history rules that keep the model's own tokens intact between steps.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import threading
from collections.abc import Sequence

from openai_harmony import (
    Conversation,
    DeveloperContent,
    HarmonyEncoding,
    HarmonyEncodingName,
    Message,
    ReasoningEffort,
    Role,
    SystemContent,
    TextContent,
    ToolDescription,
    ToolNamespaceConfig,
    load_harmony_encoding,
)

from harmony_agent.harmony.vocab import ENV_VAR, resolve_vocabulary

# Special token ids of o200k_harmony (stable across harmony releases).
START = 200006
END = 200007
MESSAGE = 200008
CHANNEL = 200005
CONSTRAIN = 200003
RETURN = 200002
CALL = 200012
END_OF_TEXT = 199999
MESSAGE_END_TOKENS = frozenset({END, CALL, RETURN})

#: gpt-oss's context window.
GPT_OSS_CONTEXT_WINDOW = 131072
#: Token ids of o200k_harmony are below this (the model's embedding size).
VOCAB_SIZE = 201088

_EFFORTS = {"low": ReasoningEffort.LOW, "medium": ReasoningEffort.MEDIUM, "high": ReasoningEffort.HIGH}


_ENV_GUARD = threading.Lock()


@functools.lru_cache(maxsize=1)
def get_encoding() -> HarmonyEncoding:
    """The gpt-oss harmony encoding, loaded once, with the vocabulary resolved offline.

    harmony finds its vocabulary through ``TIKTOKEN_ENCODINGS_BASE`` only, so
    the variable is set for the duration of the load and then restored: the
    process (and every child it starts) keeps the environment it had.
    """
    source = resolve_vocabulary()
    if source.folder is None or os.environ.get(ENV_VAR):
        return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    with _ENV_GUARD:
        os.environ[ENV_VAR] = str(source.folder)
        try:
            return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
        finally:
            os.environ.pop(ENV_VAR, None)


def clean_text(text: str) -> str:
    """``text`` as valid UTF-8: lone surrogates (from a file name, an exception, a page's script) become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        # Through UTF-16 with surrogatepass: a valid pair joins up, a lone half becomes U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_message(message: Message) -> Message:
    """A message whose texts are all valid UTF-8 (harmony refuses to render anything else)."""
    parts = list(message.content)
    cleaned = [TextContent(text=clean_text(p.text)) if isinstance(p, TextContent) else p for p in parts]
    if all(a is b or (isinstance(a, TextContent) and a.text == b.text) for a, b in zip(parts, cleaned)):
        return message
    return message.model_copy(update={"content": cleaned})


@functools.lru_cache(maxsize=1)
def assistant_prefix() -> tuple[int, ...]:
    """Tokens of ``<|start|>assistant``: what every prompt ends with."""
    return tuple(get_encoding().encode("<|start|>assistant", allowed_special="all"))


def stop_tokens() -> list[int]:
    """Tokens that end an assistant action: ``<|call|>`` and ``<|return|>``."""
    return list(get_encoding().stop_tokens_for_assistant_actions())


def reasoning_effort(value: str | ReasoningEffort) -> ReasoningEffort:
    """Accept ``"low" | "medium" | "high"`` (any case) or a ReasoningEffort."""
    if isinstance(value, ReasoningEffort):
        return value
    try:
        return _EFFORTS[str(value).lower()]
    except KeyError:
        raise ValueError(f"reasoning must be one of low, medium, high; got {value!r}") from None


def system_message(
    *,
    reasoning: str | ReasoningEffort = "medium",
    date: str | _dt.date | None = None,
    builtin_tools: Sequence[ToolNamespaceConfig] = (),
) -> Message:
    """The system message: reasoning effort, conversation date and built-in tools."""
    if date is None:
        date = _dt.date.today()
    content = (
        SystemContent.new().with_reasoning_effort(reasoning_effort(reasoning)).with_conversation_start_date(str(date))
    )
    for namespace in builtin_tools:
        content = content.with_tools(namespace)
    return Message.from_role_and_content(Role.SYSTEM, content)


def developer_message(instructions: str | None, function_tools: Sequence[ToolDescription] = ()) -> Message | None:
    """The developer message, or None when there is nothing to say in it."""
    if not instructions and not function_tools:
        return None
    content = DeveloperContent.new()
    if instructions:
        content = content.with_instructions(instructions)
    if function_tools:
        content = content.with_function_tools(list(function_tools))
    return Message.from_role_and_content(Role.DEVELOPER, content)


def user_message(text: str) -> Message:
    return Message.from_role_and_content(Role.USER, text)


def render_prompt(messages: Sequence[Message]) -> list[int]:
    """Render whole messages and open the assistant's turn (used once per conversation)."""
    return list(
        get_encoding().render_conversation_for_completion(Conversation.from_messages(list(messages)), Role.ASSISTANT)
    )


def render_message(message: Message) -> list[int]:
    return list(get_encoding().render(message))


def decode(tokens: Sequence[int]) -> str:
    """Decode tokens to text, special tokens included, invalid bytes replaced."""
    return get_encoding().decode_utf8(list(tokens)) if tokens else ""


def decode_lossy(tokens: Sequence[int]) -> str:
    """Like :func:`decode`, but never raises on a UTF-8 sequence cut mid-way."""
    try:
        return decode(tokens)
    except Exception:  # decode_utf8 raises on a cut sequence; decode() replaces bad bytes
        return get_encoding().decode(list(tokens))


def encode_completion(text: str) -> list[int]:
    """Encode harmony text written by hand (scripts, policies), special tokens allowed."""
    return list(get_encoding().encode(text, allowed_special="all"))
