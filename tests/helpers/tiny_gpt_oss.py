"""A tiny gpt-oss checkpoint with hand-set weights, so its greedy output is known.

Tests that serve a real model (vLLM, llama.cpp, transformers) need one that fits
in a test's time and memory *and* takes part in a real multi-step agent run:
random weights almost never emit a stop token, so nothing past the first step
would ever be exercised. :func:`write_tiny_gpt_oss` writes a
``GptOssForCausalLM`` folder (``config.json``, ``model.safetensors`` and a
harmony tokenizer) whose completions are two fixed scripts:

* before any tool call is in the context it answers with the *call* script,
  by default ``<|channel|>commentary to=functions.get_weather <|constrain|>json
  <|message|>{"city":"Paris"}<|call|>``;
* once a ``<|call|>`` token is in the context (so a tool result follows it) it
  answers with the *answer* script, by default ``<|channel|>final<|message|>
  It is 21 degrees in Paris.<|return|>``.

How the weights do it (hidden size 64, head_dim 64 as vLLM's CPU attention
needs, two layers in gpt-oss's sliding/full pattern, experts all zero):

* **Bigram table.** Each distinct token of the scripts (plus ``assistant``,
  which ends every prompt) owns one hidden dimension: its embedding is a
  one-hot there. ``lm_head`` maps that dimension to the token that follows it
  in the script, so the last token alone picks the next one. Every other token
  embeds to zero. RMSNorm only rescales, and rescaling keeps the argmax.
* **Mode switch.** ``<|call|>`` embeds into a *trigger* dimension. Layer 1's
  first head has a constant query (its bias) and a key only where the trigger
  is set, both in the head's last dimension: rotary embedding turns that
  dimension pair the slowest (wavelength far beyond the context, in both
  rotary layouts), so the score is the same at any distance. When a
  ``<|call|>`` is visible the head attends to it (score ~29 against 0 for
  every other token and for the sink) and copies 1 into a *mode* dimension;
  otherwise it averages zeros. ``lm_head`` gives each answer-script successor
  a bonus from the mode dimension, which is what flips the shared tokens
  (``<|channel|>`` → ``commentary`` or ``final``, ``<|message|>`` → ``{"`` or
  ``It``) from one script to the other.

Margins are wide (logit gaps of tens), so even sampling at temperature 1
follows the scripts. :func:`successor_table` checks that the two scripts can be
written this way (a token may not have two different successors within one
script) before any weights are built.

The tokenizer is built with transformers' ``TikTokenConverter`` from the
``o200k_base.tiktoken`` vocabulary that :func:`agent.vocab.resolve_vocabulary`
finds offline, with tiktoken's o200k split pattern and the 1,090 special tokens
199998–201087 named as openai-harmony decodes them. It is cached on disk
(building the merges takes a few seconds).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harmony_agent.harmony.encoding import get_encoding
from harmony_agent.harmony.vocab import VOCAB_FILENAME, VOCAB_SHA256, cache_dir, resolve_vocabulary

#: The harmony completion the model writes when no tool call is in its context.
CALL_SCRIPT = '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>'
#: The harmony completion it writes once a ``<|call|>`` (and so a tool result) is in its context.
ANSWER_SCRIPT = "<|channel|>final<|message|>It is 21 degrees in Paris.<|return|>"

VOCAB_SIZE = 201088
FIRST_SPECIAL = 199998
HIDDEN = 64
HEAD_DIM = 64
TRIGGER_DIM = HIDDEN - 2
MODE_DIM = HIDDEN - 1

# tiktoken's o200k_base split pattern (the one gpt-oss's tokenizer uses).
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# Weight magnitudes (see the module docstring).
_NEXT = 30.0  # lm_head weight from a token's dimension to its successor
_ANSWER_NEXT = 25.0  # ... when the answer script disagrees with the call script
_MODE_BONUS = 10.0  # lm_head weight from the mode dimension to answer-only successors
_QUERY = 16.0  # constant query of the mode head
_KEY = 1.0  # key weight on the (normalized, = sqrt(HIDDEN)) trigger dimension


def script_tokens(text: str) -> list[int]:
    """Token ids of a harmony completion text, special tokens included."""
    return list(get_encoding().encode(text, allowed_special="all"))


def successor_table(script: Sequence[int], first: int) -> dict[int, int]:
    """``{token: next token}`` for ``first`` followed by ``script``; refuses a token with two successors."""
    chain = [first, *script]
    table: dict[int, int] = {}
    for current, following in itertools.pairwise(chain):
        if table.setdefault(current, following) != following:
            raise ValueError(f"token {current} is followed by both {table[current]} and {following} in one script")
    return table


def _load_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@functools.lru_cache(maxsize=1)
def tokenizer_json() -> Path:
    """Build (once, cached on disk) the fast tokenizer of o200k_harmony; returns its ``tokenizer.json``."""
    source = resolve_vocabulary()
    if source.folder is None:
        raise RuntimeError("the o200k vocabulary is not available offline (see agent.vocab)")
    target = cache_dir() / "tiny-gpt-oss" / f"tokenizer-{VOCAB_SHA256[:12]}.json"
    if target.is_file():
        return target
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class _Converter(TikTokenConverter):
        # The converter's own reader needs the tiktoken package; the file format is two columns.
        @staticmethod
        def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:
            return _load_ranks(Path(tiktoken_url))

    encoding = get_encoding()
    specials = [encoding.decode([i]) for i in range(FIRST_SPECIAL, VOCAB_SIZE)]
    converter = _Converter(str(source.folder / VOCAB_FILENAME), pattern=O200K_PATTERN, extra_special_tokens=specials)
    tokenizer = converter.converted()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    tokenizer.save(str(partial))
    partial.replace(target)
    return target


def _write_tokenizer(folder: Path) -> None:
    shutil.copyfile(tokenizer_json(), folder / "tokenizer.json")
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|startoftext|>",
        "eos_token": "<|return|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 131072,
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {"bos_token": config["bos_token"], "eos_token": config["eos_token"], "pad_token": config["pad_token"]}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))


def tiny_config(max_position_embeddings: int = 4096):
    """The architecture: two layers (sliding, full), two heads of 64, four zeroed experts."""
    from transformers import GptOssConfig

    return GptOssConfig(
        num_hidden_layers=2,
        hidden_size=HIDDEN,
        intermediate_size=HIDDEN,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=HEAD_DIM,
        num_local_experts=4,
        num_experts_per_tok=2,
        vocab_size=VOCAB_SIZE,
        sliding_window=128,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
        eos_token_id=[200002, 200012],
        pad_token_id=199999,
        bos_token_id=199998,
    )


def hand_set_weights(model, call_script: Sequence[int], answer_script: Sequence[int], first: int) -> None:
    """Write the bigram table and the mode head into a zero-initialised GptOssForCausalLM."""
    import torch

    call_next = successor_table(call_script, first)
    answer_next = successor_table(answer_script, first)
    call_token = get_encoding().encode("<|call|>", allowed_special="all")[0]
    if call_token in answer_script:
        raise ValueError("the answer script may not contain <|call|>: it switches the mode")
    known = sorted(set(call_next) | set(answer_next))
    if len(known) > TRIGGER_DIM:
        raise ValueError(f"the scripts use {len(known)} distinct tokens; at most {TRIGGER_DIM} fit")
    dim = {token: i for i, token in enumerate(known)}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for name, parameter in model.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                parameter.fill_(1.0)
        embed = model.model.embed_tokens.weight
        head = model.lm_head.weight
        for token, i in dim.items():
            embed[token, i] = 1.0
        embed[call_token, TRIGGER_DIM] = 1.0
        # Bigram table: the call script's successors, and the answer script's where it agrees.
        for token, following in call_next.items():
            head[following, dim[token]] = _NEXT
        for token, following in answer_next.items():
            if call_next.get(token) in (None, following):
                head[following, dim[token]] = _NEXT
            else:
                head[following, dim[token]] = _ANSWER_NEXT
                head[following, MODE_DIM] = _MODE_BONUS
        # Mode head: layer 1 (full attention), head 0, the head's last dimension.
        attention = model.model.layers[1].self_attn
        attention.q_proj.bias[HEAD_DIM - 1] = _QUERY
        attention.k_proj.weight[HEAD_DIM - 1, TRIGGER_DIM] = _KEY
        # The normalized trigger is sqrt(HIDDEN); the value copies 1 into the mode dimension.
        attention.v_proj.weight[0, TRIGGER_DIM] = 1.0 / HIDDEN**0.5
        attention.o_proj.weight[MODE_DIM, 0] = 1.0
    _check_table(head, dim, call_next, answer_next)


def _check_table(head, dim: dict[int, int], call_next: dict[int, int], answer_next: dict[int, int]) -> None:
    """Simulate the readout for every (token, mode) the scripts visit; the argmax must be the script's."""
    import torch

    for mode, table in ((0.0, call_next), (1.0, answer_next)):
        for token, following in table.items():
            hidden = torch.zeros(HIDDEN)
            hidden[dim[token]] = 1.0
            hidden[MODE_DIM] = mode
            chosen = int(torch.argmax(head @ hidden))
            if chosen != following:
                raise ValueError(f"mode {mode}: after {token} the table picks {chosen}, not {following}")


def write_tiny_gpt_oss(
    folder: str | Path,
    *,
    call_script: str = CALL_SCRIPT,
    answer_script: str = ANSWER_SCRIPT,
    max_position_embeddings: int = 4096,
) -> Path:
    """Write the checkpoint folder (config, safetensors weights, tokenizer) and return it.

    ``call_script`` is what the model says while no ``<|call|>`` is in its
    context (it should end in ``<|call|>``); ``answer_script`` what it says
    after (ending in ``<|return|>``). Both are harmony completion texts, i.e.
    what follows ``<|start|>assistant``.
    """
    import torch
    from transformers import GptOssForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_config(max_position_embeddings)
    first = get_encoding().encode("<|start|>assistant", allowed_special="all")[-1]
    with torch.device("cpu"):
        model = GptOssForCausalLM(config).to(torch.float32)
    hand_set_weights(model, script_tokens(call_script), script_tokens(answer_script), first)
    model.save_pretrained(folder, safe_serialization=True)
    _write_tokenizer(folder)
    (folder / "scripts.json").write_text(json.dumps({"call": call_script, "answer": answer_script}, indent=2))
    return folder


def cached_tiny_gpt_oss(*, call_script: str = CALL_SCRIPT, answer_script: str = ANSWER_SCRIPT) -> Path:
    """The checkpoint in the project's cache folder, written once per version of this module and scripts.

    Servers started by tests read it from there: a test's temporary folder may
    be tidied away by another pytest run while the server still needs it.
    """
    key = hashlib.sha256(
        Path(__file__).read_bytes() + call_script.encode() + b"\0" + answer_script.encode()
    ).hexdigest()[:16]
    folder = cache_dir() / "tiny-gpt-oss" / f"model-{key}"
    if (folder / "scripts.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))
    write_tiny_gpt_oss(partial, call_script=call_script, answer_script=answer_script)
    try:
        partial.rename(folder)
    except OSError:  # written meanwhile by another process
        shutil.rmtree(partial, ignore_errors=True)
    return folder
