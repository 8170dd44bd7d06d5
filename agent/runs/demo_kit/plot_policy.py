"""A stand-in for gpt-oss that computes with the python tool and saves a plot, for demos without weights.

It reads only the conversation, as the model would: it asks python to compute
and plot, then answers with what python printed. Swap the model for a real
gpt-oss to run the same task for real.
"""

from openai_harmony import Message, Role

CODE = """import statistics
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
samples = [12.5, 14.1, 13.8, 15.2, 11.9, 14.7]
plt.plot(samples, marker="o")
plt.title("samples")
plt.savefig("/mnt/data/samples.png")
print(round(statistics.mean(samples), 3), round(statistics.stdev(samples), 3))"""


def policy(messages: list[Message]) -> str:
    last = messages[-1]
    if last.author.role == Role.TOOL and last.author.name == "python":
        printed = last.content[0].text.strip().splitlines()[0] if last.content[0].text.strip() else ""
        parts = printed.split()
        if len(parts) == 2:
            return (
                f"<|channel|>final<|message|>The mean is {parts[0]} and the sample standard deviation is {parts[1]}; "
                "the plot is in /mnt/data/samples.png.<|return|>"
            )
        return f"<|channel|>final<|message|>python could not compute it: {last.content[0].text}<|return|>"
    return (
        "<|channel|>analysis<|message|>python computes the statistics and draws the plot.<|end|>"
        f"<|start|>assistant<|channel|>analysis to=python code<|message|>{CODE}<|call|>"
    )
