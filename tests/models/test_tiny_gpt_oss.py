"""The hand-set tiny gpt-oss (tests/tiny_gpt_oss.py): its tokenizer is harmony's, its output is its scripts.

Checked with transformers itself, greedy and sampled, through our Agent, so
that the vLLM and llama.cpp tests that serve the same folder can rely on it.
"""

import pytest

torch = pytest.importorskip("torch")

from transformers import AutoTokenizer, GptOssForCausalLM

from harmony_agent import Agent, SamplingParams
from harmony_agent.harmony.encoding import get_encoding
from harmony_agent.models import Model
from harmony_agent.models.transformers_model import TransformersModel
from helpers.completions import get_weather
from helpers.tiny_gpt_oss import ANSWER_SCRIPT, CALL_SCRIPT, script_tokens, successor_table, write_tiny_gpt_oss


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_gpt_oss(tmp_path_factory.mktemp("tiny-gpt-oss"))


@pytest.fixture(scope="module")
def tokenizer(folder):
    return AutoTokenizer.from_pretrained(folder)


class _Recorder(Model):
    """Records the prompt it is given and answers with the answer script, ending the run."""

    name = "recorder"

    def __init__(self):
        super().__init__()
        self.prompt: list[int] = []

    async def generate(self, prompt, *, stop, sampling):
        self.prompt = list(prompt)
        for token in script_tokens(ANSWER_SCRIPT):
            yield token


def rendered_prompt() -> list[int]:
    """A real first-step prompt: system, developer (instructions, a function tool), a user message."""
    recorder = _Recorder()
    Agent(recorder, tools=[get_weather], instructions="Answer briefly. Ünïcödé: 日本語, emoji 🎉.").run(
        "Wie ist das Wetter in Paris?"
    )
    return recorder.prompt


def test_tokenizer_ids_equal_harmony_on_prompts_calls_and_unicode(tokenizer):
    encoding = get_encoding()
    prompt = rendered_prompt()
    prompt_text = encoding.decode(prompt)
    texts = [
        prompt_text,
        CALL_SCRIPT,
        ANSWER_SCRIPT,
        '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"temp": -3.5}<|end|>',
        "<|channel|>analysis<|message|>Let me think… 2+2=4; naïve café, Ελληνικά, русский, عربى, 한국어, 🎉🚀\n\n\t code()<|end|>",
        "It's   spaced\r\n   out   ",
    ]
    for text in texts:
        expected = list(encoding.encode(text, allowed_special="all"))
        assert tokenizer.encode(text, add_special_tokens=False) == expected, text[:60]
        assert tokenizer.decode(expected) == text
    assert tokenizer.encode(prompt_text, add_special_tokens=False) == prompt
    # Every harmony special token is one token under harmony's own name.
    for token_id in range(199998, 201088):
        assert tokenizer.convert_ids_to_tokens(token_id) == encoding.decode([token_id])
    assert len(tokenizer) == 201088


@pytest.mark.parametrize("dtype,temperature", [(torch.float32, 0.0), (torch.bfloat16, 1.0)])
def test_agent_run_follows_the_scripts(folder, dtype, temperature):
    model = GptOssForCausalLM.from_pretrained(folder, dtype=dtype)
    agent = Agent(
        TransformersModel(model), tools=[get_weather], sampling=SamplingParams(temperature=temperature, seed=3)
    )
    result = agent.run("What is the weather in Paris?")
    generations = [e for e in result.events if e.type == "generation"]
    assert generations, [e.message for e in result.events if e.type == "error"]
    assert [g.token_ids for g in generations] == [script_tokens(CALL_SCRIPT), script_tokens(ANSWER_SCRIPT)]
    tool_result = next(e for e in result.events if e.type == "tool_result")
    assert tool_result.recipient == "functions.get_weather" and '"city": "Paris"' in tool_result.content
    assert result.stop_reason == "final" and result.final_text == "It is 21 degrees in Paris."


def test_mode_switch_sees_a_call_far_back_in_a_long_context(folder):
    # A long tool result puts ~2,500 tokens between <|call|> and the next prompt's end:
    # the mode head must still find it (rotary's slowest pair barely turns).
    model = TransformersModel(GptOssForCausalLM.from_pretrained(folder, dtype=torch.float32))
    encoding = get_encoding()
    first = list(encoding.encode("<|start|>user<|message|>Weather?<|end|><|start|>assistant", allowed_special="all"))
    filler = " ".join(f"word{i}" for i in range(1200))
    second = (
        first
        + script_tokens(CALL_SCRIPT)
        + list(
            encoding.encode(
                f"<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{filler}<|end|><|start|>assistant",
                allowed_special="all",
            )
        )
    )
    assert len(second) > 2500
    for prompt, script in ((first, CALL_SCRIPT), (second, ANSWER_SCRIPT)):
        model.reset_cache()
        tokens = _generate(model, prompt)
        assert tokens == script_tokens(script)


def _generate(model, prompt):
    import asyncio

    async def go():
        return [t async for t in model.generate(prompt, stop=[200002, 200012], sampling=SamplingParams(temperature=0))]

    return asyncio.run(go())


def test_scripts_that_cannot_be_a_bigram_table_are_refused():
    with pytest.raises(ValueError, match="followed by both"):
        successor_table([1, 2, 1, 3], first=0)
