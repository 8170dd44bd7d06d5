"""HTML reports: what an agent did, as a page a person reads, in one file that opens offline.

A run's report is a timeline of its steps: the reasoning (collapsed), each
tool call with its arguments and result, screenshots inline, timings and
token counts, and the final answer with the model's citations
(``【3†L5-L9】``) turned into links to the pages they cite. A batch's report
is a table of its tasks with their checks, linking to each run's report.
Everything (styles, images) is inside the file: no CDN, no network.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import os
from pathlib import Path
from urllib.parse import quote

from harmony_agent import events as ev
from harmony_agent.citations import cite_html, pages_seen
from harmony_agent.runs.batch import TaskResult, read_results
from harmony_agent.transcript import read_transcript

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; color: #1d2330; max-width: 62rem; margin: 1.5rem auto; padding: 0 1rem; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 1.6rem; }
.meta { color: #6b7385; } .meta span { margin-right: 1rem; }
.step { border-left: 3px solid #dfe3ea; padding: .2rem 0 .2rem .8rem; margin: .8rem 0; }
.step > .label { color: #6b7385; font-size: .85rem; }
details { margin: .3rem 0; } summary { cursor: pointer; color: #6b7385; }
pre { white-space: pre-wrap; background: #f3f4f7; padding: .5rem; border-radius: .3rem; font-size: .85rem; overflow-x: auto; }
.call { font-weight: 600; } .error { color: #c0392b; } .ok { color: #1e8449; }
.result.error pre { border-left: 3px solid #c0392b; }
img { max-width: 100%; border: 1px solid #dfe3ea; border-radius: .3rem; margin: .3rem 0; }
.final { background: #eef6ee; padding: .6rem .8rem; border-radius: .4rem; white-space: pre-wrap; }
table { border-collapse: collapse; width: 100%; } td, th { border-bottom: 1px solid #dfe3ea; padding: .35rem .5rem; text-align: left; vertical-align: top; }
.pass { color: #1e8449; font-weight: 600; } .fail { color: #c0392b; font-weight: 600; }
"""


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


def _inside(file: Path, folder: Path) -> Path | None:
    """``file`` with every link resolved, when it is a regular file inside ``folder``; else None."""
    try:
        real, root = file.resolve(strict=True), folder.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return real if real.is_file() and real.is_relative_to(root) else None


def locate_image(path: str, base: Path) -> Path | None:
    """The file a transcript's image path names, found only inside the transcript's folder ``base``.

    Paths were recorded relative to the folder the run started in, or
    absolute; the report may be written from anywhere, and the run's folder
    may have moved since. So a path is tried as recorded (when it lands
    inside ``base``), then relative to ``base``, then as the same file in a
    folder of the same name beside the transcript (``run.screenshots/``).
    Nothing outside ``base`` is read: a transcript is not trusted to name
    host files.
    """
    named = Path(path)
    tries = [named] if named.is_absolute() else [base / named, Path.cwd() / named]
    if len(named.parts) >= 2:
        tries.append(base / named.parent.name / named.name)
    for candidate in tries:
        found = _inside(candidate, base)
        if found is not None:
            return found
    return None


def _image(path: str, base: Path) -> str:
    """An image embedded as a data URI (a missing file says so instead)."""
    file = locate_image(path, base)
    if file is None and path.startswith("/mnt/data/"):
        return f'<p class="meta">saved in the run\'s sandbox as {html.escape(path)}</p>'
    if file is None:
        return f'<p class="error">screenshot {html.escape(path)} is missing (or outside the report\'s folder)</p>'
    kind = mimetypes.guess_type(file.name)[0] or "image/png"
    if not kind.startswith("image/"):
        return f'<p class="error">{html.escape(path)} is not an image</p>'
    data = base64.b64encode(file.read_bytes()).decode()
    return f'<img alt="screenshot {html.escape(file.name)}" src="data:{kind};base64,{data}">'


def local_href(page: Path, folder: Path) -> str:
    """A link from a page in ``folder`` to the file ``page``: relative, percent-encoded, never a scheme."""
    relative = Path(os.path.relpath(page, folder)).as_posix()
    return quote(relative if relative.startswith(("../", "/")) else f"./{relative}")


def _run_times(events: list[ev.Event]) -> list[float]:
    """Seconds of each run in the events, from its own start to its own end (a chat's transcript holds several)."""
    times, started = [], None
    for event in events:
        if isinstance(event, ev.RunStartEvent):
            started = event.time
        elif isinstance(event, ev.RunEndEvent) and started is not None:
            times.append(max(0.0, event.time - started))
            started = None
    return times


def run_report(events: list[ev.Event], *, base: Path, title: str | None = None) -> str:
    """The HTML of one run's report from its events (a transcript, or ``RunResult.events``)."""
    pages = pages_seen(events)
    start = next((e for e in events if isinstance(e, ev.RunStartEvent)), None)
    end = next((e for e in reversed(events) if isinstance(e, ev.RunEndEvent)), None)
    heading = title or (start.task if start else "run")
    parts = [f"<h1>{html.escape(heading)}</h1>"]
    if start is not None:
        parts.append(
            f'<p class="meta"><span>model {html.escape(start.model)}</span><span>tools '
            f"{html.escape(', '.join(start.tools) or 'none')}</span><span>reasoning {start.reasoning}</span></p>"
        )
    if end is not None:
        u = end.usage
        runs = _run_times(events)
        state = "ok" if end.stop_reason == "final" else "error"
        parts.append(
            f'<p class="meta"><span class="{state}">stop: {html.escape(end.stop_reason)}</span>'
            f"<span>{end.steps} steps</span><span>{sum(runs):.1f} s"
            f"{f' in {len(runs)} turns' if len(runs) > 1 else ''}</span><span>prompt {u.prompt_tokens} tokens "
            f"(prefilled {u.prefilled_tokens})</span><span>generated {u.completion_tokens}</span></p>"
        )
        if end.error:
            parts.append(f'<p class="error">{html.escape(end.error)}</p>')
    step_open = None
    for event in events:
        if isinstance(event, ev.GenerationEvent):
            if step_open is not None:
                parts.append("</div>")
            step_open = event.step
            parts.append(
                f'<div class="step"><div class="label">step {event.step} · {event.completion_tokens} tokens '
                f"in {event.duration_s:.2f} s · prompt {event.prompt_tokens} (prefilled {event.prefilled_tokens})</div>"
            )
            for message in event.messages:
                if message.channel == "analysis" and not message.recipient:
                    parts.append(
                        f'<details class="reasoning"><summary>reasoning</summary><pre>{html.escape(message.text)}</pre></details>'
                    )
                elif message.channel == "commentary" and not message.recipient:
                    parts.append(f"<p>{html.escape(message.text)}</p>")
        elif isinstance(event, ev.ToolCallEvent):
            parts.append(
                f'<div class="call">→ {html.escape(event.recipient)}</div><pre>{html.escape(event.content)}</pre>'
            )
        elif isinstance(event, ev.ToolResultEvent):
            kind = "result error" if event.is_error else "result"
            tag = "refused" if event.refused else f"{event.duration_s * 1000:.0f} ms"
            parts.append(
                f'<div class="{kind}"><details open><summary>← {html.escape(event.recipient)} ({tag})</summary>'
                f"<pre>{html.escape(event.content)}</pre></details>"
            )
            parts += [_image(path, base) for path in event.images]
            parts.append("</div>")
        elif isinstance(event, ev.ErrorEvent) and not event.recovered:
            parts.append(f'<p class="error">{html.escape(event.kind)}: {html.escape(event.message)}</p>')
        elif isinstance(event, ev.FinalEvent):
            if step_open is not None:
                parts.append("</div>")
                step_open = None
            parts.append(f'<h2>Answer</h2><div class="final">{cite_html(event.text, pages)}</div>')
    if step_open is not None:
        parts.append("</div>")
    return _page(heading, "".join(parts))


def batch_report(
    results: list[TaskResult], *, links: dict[tuple[str, int], str] | None = None, title: str = "batch"
) -> str:
    """The HTML of a batch's report: a row per run, its checks, and a link to its own report."""
    links = links or {}
    passed = sum(r.passed for r in results)
    rows = []
    for r in results:
        checks = (
            "<br>".join(
                f'<span class="{"ok" if c.passed else "error"}">{"✓" if c.passed else "✗"} '
                f"{html.escape(c.check)}</span>: {html.escape(c.reason)}"
                for c in r.checks
            )
            or "—"
        )
        name = html.escape(r.id + (f" #{r.repeat}" if r.repeat > 1 else ""))
        link = links.get(r.key)
        cell = f'<a href="{html.escape(link)}">{name}</a>' if link else name
        verdict = '<span class="pass">pass</span>' if r.passed else '<span class="fail">fail</span>'
        error = f'<br><span class="error">{html.escape(r.error)}</span>' if r.error else ""
        rows.append(
            f"<tr><td>{cell}</td><td>{verdict}</td><td>{checks}{error}</td><td>{html.escape(r.stop_reason or '—')}</td>"
            f"<td>{r.steps}</td><td>{r.prompt_tokens + r.completion_tokens}</td><td>{r.wall_s:.1f} s</td></tr>"
        )
    body = (
        f'<h1>{html.escape(title)}</h1><p class="meta"><span>{passed} of {len(results)} passed</span></p>'
        "<table><thead><tr><th>task</th><th>result</th><th>checks</th><th>stop</th><th>steps</th><th>tokens</th>"
        f"<th>time</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return _page(title, body)


def find_transcript(result: TaskResult, folder: Path) -> Path | None:
    """A result's transcript: where it was recorded, else in the batch's ``runs/`` beside the results file.

    The recorded path may be relative to wherever the batch ran; the report
    may be written from another folder, or after the batch's folder moved.
    """
    if not result.transcript:
        return None
    recorded = Path(result.transcript)
    candidates = [recorded] if recorded.is_absolute() else []
    for candidate in [*candidates, folder / recorded, folder / "runs" / recorded.name]:
        # Only inside the batch's folder: a results file is not trusted to name host files to read, or
        # places to write a page beside.
        found = _inside(candidate, folder)
        if found is not None and found.suffix == ".jsonl":
            return found
    return None


def write_report(source: str | os.PathLike[str], output: str | os.PathLike[str] | None = None) -> Path:
    """Write the report of a transcript or a results file; a batch also gets each run's report beside it."""
    source = Path(source)
    first = next((line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()), "")
    target = Path(output) if output else source.with_suffix(".html")
    if '"passed"' in first and '"type"' not in first:
        results = read_results(source)
        links = {}
        for result in results:
            transcript = find_transcript(result, source.parent)
            if transcript is None:
                continue
            page = transcript.with_suffix(".html")
            try:
                write_report(transcript, page)
            except (ValueError, UnicodeDecodeError, OSError):
                continue  # a torn or foreign transcript: the batch's page still lists the task, without a link
            links[result.key] = local_href(page, target.resolve().parent)
        target.write_text(batch_report(results, links=links, title=source.stem), encoding="utf-8")
        return target
    events = list(read_transcript(source))
    if not events:
        raise ValueError(f"{source} holds no events")
    target.write_text(run_report(events, base=source.parent), encoding="utf-8")
    return target
