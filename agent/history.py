"""The conversation as tokens, kept exactly as the model produced them.

Earlier assistant messages are never re-rendered: harmony would write
``<|channel|>commentary to=X`` back as ``to=X<|channel|>commentary``, which
changes the prompt the model sees and throws away a local model's KV cache.
Each step's prompt therefore extends the previous one token for token.

The one rewrite is harmony's chain-of-thought rule at a new user turn: every
message on the ``analysis`` channel of a turn that ended with a final answer
is dropped, whoever wrote it. Dropping the model's analysis-channel calls but
keeping the tools' answers to them would show the model results it has no
record of asking for; harmony's renderer drops by channel, and so do we.

Every text that enters the conversation from outside (the user, the
developer, a tool) passes :func:`~agent.harmony.clean_message` here, the one
place, so a lone surrogate from a tool or a page can never break rendering.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

from openai_harmony import Conversation, Message

from harmony_agent.harmony.encoding import (
    CALL,
    END,
    RETURN,
    assistant_prefix,
    clean_message,
    get_encoding,
    render_message,
    user_message,
)
from harmony_agent.harmony.parsing import ParsedMessage


@dataclass
class _Segment:
    tokens: list[int]
    messages: list[Message]
    turn: int

    @property
    def is_analysis(self) -> bool:
        return bool(self.messages) and all(m.channel == "analysis" for m in self.messages)


class History:
    """Token-exact conversation history with per-message segments."""

    def __init__(self, preamble: Sequence[Message]) -> None:
        self._segments: list[_Segment] = []
        self._tokens: list[int] = []
        self._turn = 0
        self._finished_turns: set[int] = set()
        # The system message's render depends on the developer message (harmony adds a
        # line about the functions namespace), so the preamble is rendered as one piece.
        preamble = [clean_message(m) for m in preamble]
        conversation = Conversation.from_messages(preamble)
        self._append(list(get_encoding().render_conversation(conversation)), preamble)

    @property
    def messages(self) -> list[Message]:
        return [message for segment in self._segments for message in segment.messages]

    @property
    def tokens(self) -> list[int]:
        return self._tokens

    def prompt(self) -> list[int]:
        """The next prompt: the whole history and an open assistant turn."""
        return self._tokens + list(assistant_prefix())

    def add_user(self, text: str) -> None:
        if self._finished_turns:
            kept = [s for s in self._segments if not (s.is_analysis and s.turn in self._finished_turns)]
            if len(kept) != len(self._segments):
                self._segments = kept
                self._tokens = [t for s in kept for t in s.tokens]
        self._turn += 1
        message = clean_message(user_message(text))
        self._append(render_message(message), [message])

    def add_generation(self, parsed: Sequence[ParsedMessage]) -> None:
        """Append generated messages with their own tokens.

        The sampled stop token is stored as history writes it: ``<|call|>``
        for a call (also when the model wrote ``<|return|>``), ``<|end|>`` for
        a final answer. The sampled token is never in a KV cache, so this
        costs no reuse.
        """
        for item in parsed:
            tokens = list(item.tokens)
            if tokens and item.end_token == RETURN:
                tokens[-1] = CALL if item.is_call else END
            elif item.end_token is None:
                tokens.append(CALL if item.is_call else END)
            self._append(tokens, [item.message])

    def add_tool_messages(self, messages: Sequence[Message]) -> None:
        for message in messages:
            message = clean_message(message)
            self._append(render_message(message), [message])

    def finish_turn(self) -> None:
        """The current turn ended with a final answer."""
        self._finished_turns.add(self._turn)

    def copy(self) -> History:
        """An independent copy: a run's result keeps the conversation as it was when the run ended."""
        twin = copy.copy(self)
        twin._segments = list(self._segments)
        twin._tokens = list(self._tokens)
        twin._finished_turns = set(self._finished_turns)
        return twin

    def _append(self, tokens: list[int], messages: list[Message]) -> None:
        self._segments.append(_Segment(tokens, messages, self._turn))
        self._tokens.extend(tokens)
