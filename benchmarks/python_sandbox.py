"""The python tool's cost per call and per session, against a container per call.

Measures, in one run on one machine:
- a warm ``print(1)`` call through the PythonTool (sandbox round trip plus rendering the reply): median and p95;
- a session's cold start (sandbox up, kernel answering, first call done);
- the reference approach: a new container for every call (create, start, copy the script in, exec it, remove),
  with the same image, so only the approach differs.

    .venv/bin/python benchmarks/python_sandbox.py [--calls 300] [--reference-calls 15]

Targets: warm median <= 5 ms, cold start <= 1.5 s, and >= 50x faster per call than the reference.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandboxes import DockerSandbox, LocalSandbox, SandboxError  # noqa: E402
from sandboxes.docker import docker_client  # noqa: E402
from sandboxes.images import DEFAULT_IMAGE  # noqa: E402
from tools import PythonTool, ToolCall  # noqa: E402

CALL = ToolCall("python", "analysis", "print(1)")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def warm_calls(make, calls: int) -> list[float]:
    tool = PythonTool(sandbox=make())
    try:
        await tool.start()
        for _ in range(20):  # warm-up
            await tool.execute(CALL)
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            result = await tool.execute(CALL)
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


def report(name: str, warm: list[float], cold: list[float]) -> float:
    median, p95 = statistics.median(warm) * 1000, percentile(warm, 0.95) * 1000
    cold_median = statistics.median(cold)
    print(f"{name:<11} warm print(1): median {median:6.2f} ms, p95 {p95:6.2f} ms ({len(warm)} calls); "
          f"cold start: median {cold_median:5.2f} s ({len(cold)} starts)")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--reference-calls", type=int, default=15)
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()

    medians = {}
    try:
        docker_client().images.get(DEFAULT_IMAGE)
        have_docker = True
    except Exception as exc:  # SandboxError or a missing image
        print(f"docker: skipped ({exc})")
        have_docker = False
    if have_docker:
        warm = asyncio.run(warm_calls(DockerSandbox, args.calls))
        cold = asyncio.run(cold_starts(DockerSandbox, args.starts))
        medians["docker"] = report("docker", warm, cold)
        cold_docker = statistics.median(cold)
    try:
        warm = asyncio.run(warm_calls(LocalSandbox, args.calls))
        cold = asyncio.run(cold_starts(LocalSandbox, args.starts))
        medians["bubblewrap"] = report("bubblewrap", warm, cold)
    except SandboxError as exc:
        print(f"bubblewrap: skipped ({exc})")
    if not have_docker:
        return
    reference = reference_calls(args.reference_calls)
    ref_median = statistics.median(reference) * 1000
    print(f"{'reference':<11} container per call: median {ref_median:7.1f} ms, p95 {percentile(reference, 0.95) * 1000:7.1f} ms "
          f"({len(reference)} calls)")
    ratio = ref_median / medians["docker"]
    print(f"per call, docker session vs container per call: {ratio:.0f}x faster")
    checks = [("warm median <= 5 ms", medians["docker"] <= 5), ("cold start <= 1.5 s", cold_docker <= 1.5),
              (">= 50x faster than a container per call", ratio >= 50)]
    for label, met in checks:
        print(f"target {label}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
