"""The python tool's cost per call and per session, against a container per call.

Measures, in one run on one machine, for each sandbox with both kernels side by side (IPython's cells and
the standard-library fallback):
- a warm ``print(1)`` call through the PythonTool (sandbox round trip plus rendering the reply): median and p95;
- a session's cold start (sandbox up, kernel answering, first call done);
- the reference approach: a new container for every call (create, start, copy the script in, exec it, remove),
  with the same image, so only the approach differs.

    .venv/bin/python benchmarks/python_sandbox.py [--calls 300] [--reference-calls 15] [--quick]

``--quick`` (20 calls, 3 reference calls, 2 starts) checks in CI that the script still runs and prints its ratios.

Targets, for each kernel: warm median <= 5 ms, cold start <= 1.5 s, and >= 50x faster per call than the reference.
It also prints the image's size.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import statistics
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harmony_agent.sandboxes import DockerSandbox, LocalSandbox, SandboxError
from harmony_agent.sandboxes.docker import docker_client
from harmony_agent.sandboxes.images import DEFAULT_IMAGE

KERNELS = ("ipython", "standard")
from harmony_agent.tools import PythonTool, ToolCall

CALL = ToolCall("python", "analysis", "print(1)")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def warm_calls(make, calls: int) -> list[float]:
    tool = PythonTool(sandbox=make())
    try:
        await tool.start()
        for _ in range(20):  # warm-up (the first reply also carries the fallback kernel's one-time note)
            await tool.process(CALL)
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            result = await tool.process(CALL)
            times.append(time.perf_counter() - started)
            assert result.text() == "1", result.text()
        return times
    finally:
        await tool.aclose()


async def cold_starts(make, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        async with make() as sandbox:
            result = await sandbox.execute("print(1)")
            times.append(time.perf_counter() - started)
            assert result.stdout == "1\n"
    return times


def reference_calls(calls: int) -> list[float]:
    """A container per call, as the gpt-oss reference python tool does it."""
    client = docker_client()
    script = b"print(1)\n"
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        container = client.containers.create(DEFAULT_IMAGE, ["sleep", "infinity"], user="0", network_mode="none")
        try:
            container.start()
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w") as tar:
                info = tarfile.TarInfo("script.py")
                info.size = len(script)
                tar.addfile(info, io.BytesIO(script))
            container.put_archive("/tmp", archive.getvalue())
            output = container.exec_run(["python3", "/tmp/script.py"]).output
        finally:
            container.remove(force=True)
        times.append(time.perf_counter() - started)
        assert output == b"1\n", output
    return times


def report(name: str, warm: list[float], cold: list[float]) -> tuple[float, float]:
    median, p95 = statistics.median(warm) * 1000, percentile(warm, 0.95) * 1000
    cold_median = statistics.median(cold)
    print(
        f"{name:<20} warm print(1): median {median:6.2f} ms, p95 {p95:6.2f} ms ({len(warm)} calls); "
        f"cold start: median {cold_median:5.2f} s ({len(cold)} starts)"
    )
    return median, cold_median


def measure(name: str, sandbox_class, calls: int, starts: int) -> dict[str, tuple[float, float]]:
    """Warm calls and cold starts of one sandbox, with each kernel in turn."""
    found = {}
    for kernel in KERNELS:
        make = functools.partial(sandbox_class, kernel=kernel)
        warm = asyncio.run(warm_calls(make, calls))
        cold = asyncio.run(cold_starts(make, starts))
        found[kernel] = report(f"{name} ({kernel})", warm, cold)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--reference-calls", type=int, default=15)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20 calls, 3 reference calls, 2 starts")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.reference_calls, args.starts = 20, 3, 2

    try:
        image = docker_client().images.get(DEFAULT_IMAGE)
        have_docker = True
        print(f"image {DEFAULT_IMAGE}: {image.attrs.get('Size', 0) / 1e6:.0f} MB")
    except Exception as exc:  # SandboxError or a missing image
        print(f"docker: skipped ({exc})")
        have_docker = False
    results = {}
    if have_docker:
        results["docker"] = measure("docker", DockerSandbox, args.calls, args.starts)
    try:
        results["bubblewrap"] = measure("bubblewrap", LocalSandbox, args.calls, args.starts)
    except SandboxError as exc:
        print(f"bubblewrap: skipped ({exc})")
    checks = [
        (f"{kind} ({kernel}) warm median <= 5 ms", warm <= 5)
        for kind, by in results.items()
        for kernel, (warm, _) in by.items()
    ]
    checks += [
        (f"{kind} ({kernel}) cold start <= 1.5 s", cold <= 1.5)
        for kind, by in results.items()
        for kernel, (_, cold) in by.items()
    ]
    if have_docker:
        reference = reference_calls(args.reference_calls)
        ref_median = statistics.median(reference) * 1000
        print(
            f"{'reference':<20} container per call: median {ref_median:7.1f} ms, "
            f"p95 {percentile(reference, 0.95) * 1000:7.1f} ms ({len(reference)} calls)"
        )
        for kernel, (warm, _) in results["docker"].items():
            ratio = ref_median / warm
            print(f"per call, docker session ({kernel}) vs container per call: {ratio:.0f}x faster")
            checks.append((f"docker ({kernel}) >= 50x faster than a container per call", ratio >= 50))
    for label, met in checks:
        print(f"target {label}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
