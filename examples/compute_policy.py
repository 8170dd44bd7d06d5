"""A stand-in for gpt-oss that computes with the python tool, for demos and tests without weights.

The policy sees only the conversation, as the model would: it asks python to
compute, then answers with what python returned. Swap ``--model`` for a real
gpt-oss (``transformers:openai/gpt-oss-20b`` or a server URL) to run the same
task for real.
"""

from openai_harmony import Message, Role

CODE = """import statistics
samples = [12.5, 14.1, 13.8, 15.2, 11.9, 14.7]
round(statistics.mean(samples), 3), round(statistics.stdev(samples), 3)"""


def policy(messages: list[Message]) -> str:
    last = messages[-1]
    if last.author.role == Role.TOOL and last.author.name == "python":
        shown = last.content[0].text.strip()
        if shown.startswith("("):
            mean, stdev = (part.strip() for part in shown.strip("()").split(","))
            return (
                f"<|channel|>final<|message|>The mean is {mean} and the sample standard deviation is {stdev}.<|return|>"
            )
        return f"<|channel|>final<|message|>python could not compute it: {shown}<|return|>"
    return (
        "<|channel|>analysis<|message|>I will let python compute the statistics.<|end|>"
        f"<|start|>assistant<|channel|>analysis to=python code<|message|>{CODE}<|call|>"
    )
