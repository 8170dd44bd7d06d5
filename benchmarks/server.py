"""The Responses API server under load, and what it costs per request against the in-process Agent.

A scripted policy answers every request with the same short final answer, so
the figures are the server's own: HTTP, SSE, a session per conversation and
the loop. Clients use the real ``openai`` SDK (async) against 127.0.0.1; the
server runs in a process of its own, as deployed (in the clients' process the
SDK's parsing of every event would hold the server's interpreter lock). A raw
httpx client (no SDK parsing) shows what the server itself costs.

    .venv/bin/python benchmarks/server.py [--quick]

The server runs as ``serve`` runs it: uvicorn on the runtime's loop, with the sessions. For comparison,
the raw client also measures uvicorn on a loop of its own (as ``serve`` ran it before), where each
request and each burst of events crosses between two threads.

``--quick`` (1 and 8 clients, 2 requests each) checks in CI that the script still runs and prints its ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import openai
import psutil
import uvicorn

from harmony_agent import Agent, PolicyModel
from harmony_agent.server import ServerConfig, create_app
from harmony_agent.server.app import run_on_runtime

ANSWER = (
    "<|channel|>analysis<|message|>Short.<|end|><|start|>assistant<|channel|>final<|message|>A short answer.<|return|>"
)
CONCURRENCY = (1, 8, 32)
REQUESTS_PER_CLIENT = 8


def answer(messages):
    return ANSWER


class ServerProcess:
    """The server in a process of its own, as it is deployed: the benchmark's clients (the SDK parsing events)
    must not share its interpreter lock, or the figures measure the clients' parsing as the server's cost."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self.process = process

    @property
    def should_exit(self) -> bool:
        return not self.process.is_alive()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value and self.process.is_alive():
            self.process.terminate()
            self.process.join(10)


def _serve(port: int, on_runtime: bool) -> None:
    server = uvicorn.Server(
        uvicorn.Config(create_app(ServerConfig(PolicyModel(answer))), host="127.0.0.1", port=port, log_level="warning")
    )
    if on_runtime:  # as ``serve`` runs it: uvicorn on the sessions' own loop, no hop between loops per event
        run_on_runtime(server)
    else:
        server.run()


def start_server(on_runtime: bool = True) -> tuple[ServerProcess, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(port, on_runtime), daemon=True)
    process.start()
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or not process.is_alive():
                raise RuntimeError("the benchmark server did not start") from None
            time.sleep(0.05)
    return ServerProcess(process), f"http://127.0.0.1:{port}/v1"


async def one_client(client: openai.AsyncOpenAI, first_tokens: list[float], totals: list[float]) -> None:
    for _ in range(REQUESTS_PER_CLIENT):
        started = time.perf_counter()
        stream = await client.responses.create(model="gpt-oss", input="Say something short.", stream=True, store=False)
        first = None
        async for event in stream:
            if first is None and event.type == "response.output_text.delta":
                first = time.perf_counter() - started
        first_tokens.append(first or float("nan"))
        totals.append(time.perf_counter() - started)


async def load(url: str, clients: int) -> tuple[float, list[float], list[float]]:
    first_tokens: list[float] = []
    totals: list[float] = []
    async with openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one_client(client, first_tokens, totals) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return clients * REQUESTS_PER_CLIENT / elapsed, first_tokens, totals


def in_process(n: int = 40) -> tuple[float, float, float]:
    """The same work in process, as the server does it for each request: open a session, run the task, close
    the session. Returns the median wall time of that, the median of ``session.run`` alone (the figure these
    ratios used before), and the CPU time per task of the runtime's thread, where all of it runs (measured
    there: this process has other busy threads, such as OpenMP's)."""
    from harmony_agent.sandboxes.runtime import runtime

    agent = Agent(PolicyModel(answer))
    whole, runs = [], []
    for _ in range(n):
        started = time.perf_counter()
        session = agent.session()
        run_started = time.perf_counter()
        session.run("Say something short.")
        runs.append(time.perf_counter() - run_started)
        session.close()
        whole.append(time.perf_counter() - started)

    async def cpu_per_task() -> float:
        started = time.thread_time()
        for _ in range(n):
            session = agent.session()
            await session.arun("Say something short.")
            await session.aclose()
        return (time.thread_time() - started) / n

    cpu = runtime().run(cpu_per_task())
    agent.close()
    return statistics.median(whole), statistics.median(runs), cpu


def raw_client(url: str, server: ServerProcess, n: int = 40) -> tuple[float, float]:
    """One client without the SDK (httpx reading the SSE bytes): the server's own cost per streamed request,
    as median wall time and as the server process's CPU time per request (steadier on a loaded machine)."""
    body = {"model": "gpt-oss", "input": "Say something short.", "stream": True, "store": False}
    times = []
    process = psutil.Process(server.process.pid)
    with httpx.Client() as client:
        before = sum(process.cpu_times()[:4])
        for _ in range(n):
            started = time.perf_counter()
            with client.stream("POST", f"{url}/responses", json=body) as response:
                for _chunk in response.iter_bytes():
                    pass
            times.append(time.perf_counter() - started)
        cpu = sum(process.cpu_times()[:4]) - before
    return statistics.median(times), cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 8 clients, 2 requests each")
    args = parser.parse_args()
    global REQUESTS_PER_CLIENT
    levels = (1, 8) if args.quick else CONCURRENCY
    rounds = 1 if args.quick else 9
    if args.quick:
        REQUESTS_PER_CLIENT = 2
    deployed, url = start_server(on_runtime=True)
    own_loop, own_url = start_server(on_runtime=False)
    try:
        for warm in (url, own_url):
            asyncio.run(load(warm, 1))  # warm-up: imports, the encoding, the first connections
        measured: dict[str, list[tuple[float, float]]] = {"runtime": [], "own": []}
        direct_rounds: list[tuple[float, float, float]] = []
        for _ in range(rounds):  # interleaved, so all three see the same machine
            direct_rounds.append(in_process())
            measured["runtime"].append(raw_client(url, deployed))
            measured["own"].append(raw_client(own_url, own_loop))
        direct = statistics.median(whole for whole, _, _ in direct_rounds)
        run_alone = statistics.median(run for _, run, _ in direct_rounds)
        direct_cpu = statistics.median(cpu for _, _, cpu in direct_rounds)
        print(
            f"in-process Agent, a session per task (open, run, close): median {direct * 1000:.1f} ms, "
            f"CPU {direct_cpu * 1000:.1f} ms; session.run alone {run_alone * 1000:.1f} ms"
        )
        for key, where in (("runtime", "on the runtime's loop, as serve runs it"), ("own", "on a loop of its own")):
            raw = statistics.median(wall for wall, _ in measured[key])
            raw_cpu = statistics.median(cpu for _, cpu in measured[key])
            print(
                f"server ({where}), one raw httpx client, streamed: median {raw * 1000:.1f} ms "
                f"({raw / direct:.2f}x), server CPU {raw_cpu * 1000:.1f} ms per request ({raw_cpu / direct_cpu:.2f}x)"
            )
        print(
            f"{'clients':>8} {'req/s':>8} {'TTFT p50':>10} {'TTFT p95':>10} {'total p50':>10} {'overhead vs in-process':>24}"
        )
        for clients in levels:
            rate, first, total = asyncio.run(load(url, clients))
            p50, p95 = statistics.median(first), statistics.quantiles(first, n=20)[-1]
            total50 = statistics.median(total)
            print(
                f"{clients:>8} {rate:>8.1f} {p50 * 1000:>8.1f}ms {p95 * 1000:>8.1f}ms {total50 * 1000:>8.1f}ms "
                f"{total50 / direct:>23.2f}x"
            )
    finally:
        deployed.should_exit = True
        own_loop.should_exit = True


if __name__ == "__main__":
    main()
