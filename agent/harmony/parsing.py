"""Tolerant parsing of what the model generated.

``StreamableParser`` does the parsing. Around it we add what gpt-oss emits in
the wild and harmony does not accept or misreads:

* message boundaries are found by their end tokens, so one malformed header
  costs one message, not the rest of the completion;
* a header harmony rejects (``HarmonyError``) or silently swallows is read
  again leniently from its decoded text;
* the recipient is cleaned: ``<|constrain|>json`` glued to it, a stray
  ``<|start|>`` in it, or ``<|channel|>final <|constrain|>json`` misread as a
  recipient (harmony#144) - that one is a final answer.

Recipient *aliases* (``functions.python``) depend on the tools at hand and are
resolved by the router, not here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from openai_harmony import HarmonyError, Message, Role, StreamableParser

from harmony_agent.harmony.encoding import (
    MESSAGE,
    MESSAGE_END_TOKENS,
    START,
    assistant_prefix,
    decode_lossy,
    get_encoding,
)

JSON_CONSTRAINT = "<|constrain|>json"


@dataclass
class ParsedMessage:
    """One message of a completion.

    ``tokens`` are the exact tokens of the message, beginning with
    ``<|start|>`` (for the first message, the prompt's ``<|start|>assistant``
    prefix is included) and ending with its end token, if it had one.
    ``problem`` is set when the header had to be recovered leniently.
    """

    message: Message
    tokens: list[int]
    end_token: int | None
    problem: str | None = None

    @property
    def channel(self) -> str | None:
        return self.message.channel

    @property
    def recipient(self) -> str | None:
        return self.message.recipient

    @property
    def text(self) -> str:
        return "".join(getattr(part, "text", "") for part in self.message.content)

    @property
    def is_call(self) -> bool:
        return bool(self.message.recipient) and self.message.recipient != "assistant"


@dataclass
class ContentDelta:
    channel: str | None
    text: str
    recipient: str | None = None


_RECIPIENT_RE = re.compile(r"\bto=([^\s<]+)")
_CHANNEL_RE = re.compile(r"<\|channel\|>\s*([A-Za-z_]+)")
_ROLE_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)")


def clean_recipient(recipient: str | None) -> tuple[str | None, bool]:
    """Return (recipient, json_constrained) with gpt-oss's header quirks removed."""
    if recipient is None:
        return None, False
    constrained = False
    text = recipient.strip()
    if JSON_CONSTRAINT in text:
        text = text.replace(JSON_CONSTRAINT, " ")
        constrained = True
    # Anything after a special token or a space is not part of the name.
    text = re.split(r"<\||\s", text.strip(), maxsplit=1)[0] if text.strip() else ""
    if text.startswith("to="):
        text = text[3:]
    return (text or None), constrained


def normalize(message: Message) -> Message:
    """Fix recipient and content-type quirks, returning a new message."""
    fixed = Message.from_dict(message.to_dict())  # harmony's with_* methods mutate in place
    recipient, constrained = clean_recipient(fixed.recipient)
    if recipient in ("json", "assistant"):  # "<|channel|>final <|constrain|>json" misread as a recipient
        recipient = None
    fixed.recipient = recipient
    if constrained and not fixed.content_type:
        fixed.content_type = JSON_CONSTRAINT
    if fixed.content_type and "<|" in fixed.content_type:
        # e.g. "<|constrain|>json<|channel|>x": keep the constraint only.
        fixed.content_type = JSON_CONSTRAINT if JSON_CONSTRAINT in fixed.content_type else None
    return fixed


def _lenient_message(tokens: Sequence[int]) -> tuple[Message, str]:
    """Read one message whose header harmony rejected; returns it and the problem."""
    try:
        split = list(tokens).index(MESSAGE)
    except ValueError:
        split = -1
    body_end = len(tokens) - 1 if tokens and tokens[-1] in MESSAGE_END_TOKENS else len(tokens)
    prefix = list(assistant_prefix())
    body_start = len(prefix) if list(tokens[: len(prefix)]) == prefix else (1 if tokens and tokens[0] == START else 0)
    if split < 0:
        header_text, content_tokens = "", list(tokens[body_start:body_end])
        problem = "no <|message|> token in the message header"
    else:
        header_text = decode_lossy(tokens[1 if tokens and tokens[0] == START else 0 : split])
        content_tokens = list(tokens[split + 1 : body_end])
        problem = f"malformed message header {header_text!r}"
    content = decode_lossy(content_tokens)
    message = Message.from_role_and_content(Role.ASSISTANT, content)
    channel = _CHANNEL_RE.search(header_text)
    if channel:
        message.channel = channel.group(1)
    recipient = _RECIPIENT_RE.search(header_text)
    if recipient:
        message.recipient = recipient.group(1)
    if "json" in header_text.split("to=")[-1]:
        message.content_type = JSON_CONSTRAINT
    return normalize(message), problem


class CompletionParser:
    """Incrementally parse an assistant completion, one token at a time.

    Feed the generated tokens (everything after the prompt's
    ``<|start|>assistant``); get content deltas for streaming, and the parsed
    messages when each one ends.
    """

    def __init__(self) -> None:
        self._encoding = get_encoding()
        self._first = True
        self._tokens: list[int] = []
        self._parser: StreamableParser | None = None
        self._failed = False
        self.messages: list[ParsedMessage] = []

    def _begin(self) -> None:
        self._parser = StreamableParser(self._encoding, role=None)
        self._failed = False
        if self._first:
            self._tokens = list(assistant_prefix())
            for token in self._tokens:
                self._parser.process(token)
        else:
            self._tokens = []

    def feed(self, token: int) -> ContentDelta | None:
        """Process one token; returns the content it added, if any."""
        if self._parser is None:
            self._begin()
        assert self._parser is not None
        self._tokens.append(token)
        delta: ContentDelta | None = None
        if not self._failed:
            try:
                self._parser.process(token)
                text = self._parser.last_content_delta
                if text:
                    delta = ContentDelta(self._parser.current_channel, text, self._parser.current_recipient)
            except HarmonyError:
                self._failed = True
        if token in MESSAGE_END_TOKENS:
            self._finish_message(token)
        return delta

    def _finish_message(self, end_token: int | None) -> None:
        parser, tokens = self._parser, self._tokens
        self._parser, self._tokens, self._first = None, [], False
        parsed: Message | None = None
        if parser is not None and not self._failed:
            if end_token is None:
                try:
                    parser.process_eos()
                except HarmonyError:
                    pass
            if len(parser.messages) == 1 and parser.messages[0].author.role == Role.ASSISTANT:
                parsed = parser.messages[0]
        if parsed is not None:
            self.messages.append(ParsedMessage(normalize(parsed), tokens, end_token))
        else:
            message, problem = _lenient_message(tokens)
            self.messages.append(ParsedMessage(message, tokens, end_token, problem))

    def close(self) -> list[ParsedMessage]:
        """End of generation: a message cut off without an end token is kept too."""
        if self._parser is not None and len(self._tokens) > (len(assistant_prefix()) if self._first else 0):
            self._finish_message(None)
        self._parser, self._tokens = None, []
        return self.messages


def parse_completion(tokens: Sequence[int]) -> list[ParsedMessage]:
    """Parse a whole completion at once."""
    parser = CompletionParser()
    for token in tokens:
        parser.feed(token)
    return parser.close()


def parse_conversation(tokens: Sequence[int]) -> list[Message]:
    """Parse rendered conversation tokens (system to last message) back into messages.

    Used by policy models, which see the conversation as messages. A trailing
    ``<|start|>assistant`` (an open turn) is ignored.
    """
    tokens = list(tokens)
    prefix = list(assistant_prefix())
    if tokens[-len(prefix) :] == prefix:
        tokens = tokens[: -len(prefix)]
    parser = StreamableParser(get_encoding(), role=None)
    messages: list[Message] = []
    for token in tokens:
        try:
            parser.process(token)
        except HarmonyError:
            parser = StreamableParser(get_encoding(), role=None)
    messages = [normalize(m) if m.author.role == Role.ASSISTANT else m for m in parser.messages]
    return messages
