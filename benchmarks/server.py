"""The Responses API server under load, and what it costs per request against the in-process Agent.

A scripted policy answers every request with the same short final answer, so
the figures are the server's own: HTTP, SSE, a session per conversation and
the loop. Clients use the real ``openai`` SDK (async) against 127.0.0.1.

    .venv/bin/python benchmarks/server.py [--quick]

``--quick`` (1 and 8 clients, 2 requests each) checks in CI that the script still runs and prints its ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import openai
import uvicorn

from harmony_agent import Agent, PolicyModel
from harmony_agent.server import ServerConfig, create_app

ANSWER = (
    "<|channel|>analysis<|message|>Short.<|end|><|start|>assistant<|channel|>final<|message|>A short answer.<|return|>"
)
CONCURRENCY = (1, 8, 32)
REQUESTS_PER_CLIENT = 8


def answer(messages):
    return ANSWER


def start_server() -> tuple[uvicorn.Server, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(ServerConfig(PolicyModel(answer))), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/v1"


async def one_client(client: openai.AsyncOpenAI, first_tokens: list[float], totals: list[float], requests: int) -> None:
    for _ in range(requests):
        started = time.perf_counter()
        stream = await client.responses.create(model="gpt-oss", input="Say something short.", stream=True, store=False)
        first = None
        async for event in stream:
            if first is None and event.type == "response.output_text.delta":
                first = time.perf_counter() - started
        first_tokens.append(first or float("nan"))
        totals.append(time.perf_counter() - started)


async def load(url: str, clients: int, requests: int = REQUESTS_PER_CLIENT) -> tuple[float, list[float], list[float]]:
    first_tokens: list[float] = []
    totals: list[float] = []
    async with openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one_client(client, first_tokens, totals, requests) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return clients * requests / elapsed, first_tokens, totals


def in_process(n: int = 40) -> float:
    agent = Agent(PolicyModel(answer))
    times = []
    for _ in range(n):
        session = agent.session()
        started = time.perf_counter()
        session.run("Say something short.")
        times.append(time.perf_counter() - started)
        session.close()
    agent.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 8 clients, 2 requests each")
    args = parser.parse_args()
    levels, requests = ((1, 8), 2) if args.quick else (CONCURRENCY, REQUESTS_PER_CLIENT)
    server, url = start_server()
    try:
        asyncio.run(load(url, 1, requests))  # warm-up: imports, the encoding, the first connections
        direct = in_process(10 if args.quick else 40)
        print(f"in-process Agent, new session per task: median {direct * 1000:.1f} ms")
        print(
            f"{'clients':>8} {'req/s':>8} {'TTFT p50':>10} {'TTFT p95':>10} {'total p50':>10} {'overhead vs in-process':>24}"
        )
        for clients in levels:
            rate, first, total = asyncio.run(load(url, clients, requests))
            p50, p95 = statistics.median(first), statistics.quantiles(first, n=20)[-1]
            total50 = statistics.median(total)
            print(
                f"{clients:>8} {rate:>8.1f} {p50 * 1000:>8.1f}ms {p95 * 1000:>8.1f}ms {total50 * 1000:>8.1f}ms "
                f"{total50 / direct:>23.2f}x"
            )
    finally:
        server.should_exit = True


if __name__ == "__main__":
    main()
