"""The command line of runs people check: batches of task files, reports, and the demo.

``harmony-agent batch tasks.yaml [more.yaml | folder] --concurrency 4`` runs
every task with its checks, shows live progress, writes one transcript per
task, a results file and, with ``--report``, an HTML report; the exit code
is 0 only when every task passed. ``harmony-agent report FILE`` writes the
report of a transcript or a results file. ``harmony-agent demo`` runs the
example tasks through the real tools with stand-in models.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import typer
from rich.live import Live
from rich.table import Table

from harmony_agent.cli.console import make_console, safe
from harmony_agent.runs.batch import BatchProgress, TaskResult, run_batch, summary
from harmony_agent.runs.factory import TaskAgentFactory
from harmony_agent.runs.report import write_report
from harmony_agent.runs.tasks import TaskFileError, TaskSpec, load_tasks
from harmony_agent.yaml_files import YamlFileError, read_yaml

console = make_console()
err = make_console(stderr=True)


def _fail(message: object) -> typer.Exit:
    err.print(f"[red]error:[/red] {safe(str(message))}")
    return typer.Exit(2)


class _LiveStatus:
    """The progress line, worked out at every refresh (4 a second), so its clock runs between results."""

    def __init__(self, progress: BatchProgress) -> None:
        self.progress = progress

    def __rich__(self) -> str:
        return _status(self.progress)


def _status(progress: BatchProgress) -> str:
    last = ""
    if progress.last is not None:
        mark = "[green]passed[/green]" if progress.last.passed else "[red]failed[/red]"
        last = f" · last: {safe(progress.last.id)} {mark}"
    return (
        f"[bold]{progress.done}/{progress.total}[/bold] done · {progress.running} running · "
        f"[green]{progress.passed} passed[/green] · [red]{progress.failed} failed[/red]"
        f"{f' · {progress.skipped} resumed' if progress.skipped else ''} · {progress.elapsed_s:.0f} s{last}"
    )


def results_table(results: list[TaskResult]) -> Table:
    table = Table(title="tasks", show_lines=False)
    for column in ("task", "result", "checks", "stop", "steps", "tokens", "time"):
        table.add_column(column, overflow="fold")  # long paths and errors wrap whole, never cut with "…"
    for r in results:
        checks = f"{sum(c.passed for c in r.checks)}/{len(r.checks)}" if r.checks else "—"
        verdict = "[green]pass[/green]" if r.passed else "[red]fail[/red]"
        name = r.id + (f" #{r.repeat}" if r.repeat > 1 else "")
        detail = f"{checks}" + (f" · {safe(r.error)}" if r.error else "")  # whole: the table wraps it
        table.add_row(
            safe(name),
            verdict,
            detail,
            safe(r.stop_reason or "—"),
            str(r.steps),
            str(r.prompt_tokens + r.completion_tokens),
            f"{r.wall_s:.1f} s",
        )
    return table


def batch(
    paths: list[Path] = typer.Argument(..., help="Task files or folders of them."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model for tasks that name none."),
    concurrency: int = typer.Option(1, "--concurrency", "-c", min=1, help="Tasks run at once."),
    repeat: int = typer.Option(1, "--repeat", min=1, help="Run each task this many times and report its pass rate."),
    output: Path = typer.Option(
        Path("runs/batch"), "--output", "-o", help="Folder for results.jsonl, transcripts and the report."
    ),
    resume: bool = typer.Option(False, "--resume", help="Skip tasks already in the output's results.jsonl."),
    report: bool = typer.Option(False, "--report", help="Write output/report.html at the end."),
    ray: bool = typer.Option(
        False, "--ray", help="Run each task as a Ray task (a local Ray instance unless --ray-address)."
    ),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Address of a Ray cluster (implies --ray)."),
) -> None:
    """Run task files as a batch: checks, live progress, a results file, a summary; exit 0 only if all passed."""
    raise typer.Exit(
        run_batch_command(
            paths,
            model=model,
            concurrency=concurrency,
            repeat=repeat,
            output=output,
            resume=resume,
            report=report,
            ray=ray or bool(ray_address),
            ray_address=ray_address,
        )
    )


def run_batch_command(
    paths: list[Path],
    *,
    model: str | None = None,
    concurrency: int = 1,
    repeat: int = 1,
    output: Path = Path("runs/batch"),
    resume: bool = False,
    report: bool = False,
    ray: bool = False,
    ray_address: str | None = None,
) -> int:
    """The batch command's work (``run`` hands task lists and folders here too); returns the exit code."""
    skipped: list[str] = []
    try:
        specs = load_tasks(paths, skipped=skipped)
    except TaskFileError as exc:
        _fail(exc)
        return 2
    for note in skipped:
        err.print(f"[dim]skipped {safe(note)}[/dim]")
    if output.exists() and not output.is_dir():
        _fail(f"--output {output} is a file, not a folder")
        return 2
    factory = TaskAgentFactory(defaults=TaskSpec(task="-", model=model) if model else None)
    results_path = output / "results.jsonl"
    started = time.monotonic()
    try:
        results = _run_live(
            specs,
            factory,
            results_path,
            output,
            concurrency=concurrency,
            repeat=repeat,
            resume=resume,
            ray=ray,
            ray_address=ray_address,
        )
    except KeyboardInterrupt:  # after the live line is gone, on a line of its own
        err.print(f"\n[yellow]interrupted[/yellow]: finished results are in {safe(results_path)}; --resume goes on")
        return 130
    console.print(results_table(results))
    totals = summary(results)
    console.print(
        f"{totals['passed']} of {totals['runs']} passed in {time.monotonic() - started:.1f} s · results: {results_path}"
    )
    if repeat > 1:
        for task, row in totals["tasks"].items():
            console.print(f"  {safe(task)}: pass rate {row['pass_rate']:.0%} ({row['passed']}/{row['runs']})")
    if report:
        console.print(f"report: {write_report(results_path, output / 'report.html')}")
    return 0 if all(r.passed for r in results) else 1


def _run_live(
    specs: list[TaskSpec],
    factory: TaskAgentFactory,
    results_path: Path,
    output: Path,
    *,
    concurrency: int,
    repeat: int,
    resume: bool,
    ray: bool,
    ray_address: str | None,
) -> list[TaskResult]:
    """Run the batch under a live progress line (gone when it ends, Ctrl-C included)."""
    with Live(console=console, refresh_per_second=4, transient=True) as live:

        def show(progress: BatchProgress) -> None:
            live.update(_LiveStatus(progress))

        if ray:
            from harmony_agent.runs.ray import run_batch_on_ray

            return run_batch_on_ray(
                specs,
                factory,
                results=results_path,
                transcripts=output / "runs",
                repeat=repeat,
                resume=resume,
                address=ray_address,
                progress=show,
            )
        return asyncio.run(
            run_batch(
                specs,
                factory,
                results=results_path,
                transcripts=output / "runs",
                concurrency=concurrency,
                repeat=repeat,
                resume=resume,
                progress=show,
            )
        )


def report(
    source: Path = typer.Argument(
        ..., help="A transcript (--transcript), a batch's results.jsonl, or a batch's folder (--output)."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Where to write the HTML (default: beside it)."),
) -> None:
    """Write a self-contained HTML report of a run or a batch."""
    if source.is_dir():
        if not (source / "results.jsonl").is_file():
            raise _fail(f"{source} is a folder without a results.jsonl (name a transcript, or a batch's folder)")
        source, output = source / "results.jsonl", output or source / "report.html"
    if not source.is_file():
        raise _fail(f"{source} is not a file")
    try:
        path = write_report(source, output)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise _fail(f"{source}: {exc}") from None
    console.print(f"report: {path}")


def demo(
    output: Path = typer.Option(
        Path("runs/demo"), "--output", "-o", help="Folder for the results, transcripts and report."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Run the demo tasks with this model instead of the stand-ins."
    ),
    tools: str | None = typer.Option(None, "--tools", help="Comma-separated subset of python,browser,computer."),
) -> None:
    """Short checked episodes through the real python, browser and desktop tools, then a report."""
    from harmony_agent.runs.demo import DEMO_TOOLS, run_demo
    from harmony_agent.runs.demo_kit import TASKS

    chosen = tuple(t.strip() for t in tools.split(",")) if tools else DEMO_TOOLS
    unknown = [t for t in chosen if t not in DEMO_TOOLS]
    if unknown:
        raise _fail(f"unknown demo tool(s) {', '.join(unknown)}; choose from {', '.join(DEMO_TOOLS)}")
    if model is None:
        console.print(
            "[bold]A stand-in policy plays gpt-oss in these episodes[/bold] (no weights needed); "
            "the python sandbox, Chromium and the virtual desktop are real."
        )
    try:
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            results, page = run_demo(output, tools=chosen, model=model, progress=lambda p: live.update(_LiveStatus(p)))
    except FileNotFoundError as exc:
        raise _fail(exc) from None
    console.print(results_table(results))
    console.print(f"report: {page}")
    console.print(
        "With real gpt-oss: [bold]harmony-agent demo --model http://localhost:8000/v1[/bold] "
        "(vLLM or llama.cpp's server), or [bold]--model openai/gpt-oss-20b[/bold] on a GPU. "
        f"The task files are in {safe(TASKS)}."
    )
    raise typer.Exit(0 if all(r.passed for r in results) else 1)


def is_batch(path: Path) -> bool:
    """Whether ``run`` was given several tasks: a folder, or a task file with a ``tasks:`` list."""
    if path.is_dir():
        return path.suffix not in (".yaml", ".yml")  # a folder named like a file is a mistake, said as such by run
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        return False
    try:
        data = read_yaml(path, what="task file")
    except YamlFileError:
        return False  # run reads it again, and says what is wrong
    return isinstance(data, dict) and "tasks" in data
