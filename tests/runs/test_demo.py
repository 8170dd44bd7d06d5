"""The demo's task files pass their checks with the stand-in models, on the real tools."""

from __future__ import annotations

from harmony_agent.runs.demo import run_demo
from helpers.available import require


def test_the_demo_runs_every_tool_and_writes_its_report(tmp_path):
    for kind in ("bubblewrap", "chromium", "desktop"):
        require(kind)
    results, report = run_demo(tmp_path)
    failed = {r.id: (r.error, [c for c in r.checks if not c.passed]) for r in results if not r.passed}
    assert not failed, failed
    assert [r.id for r in results] == ["python-plot", "browser-research", "desktop-greeter"]
    text = report.read_text()
    assert "3 of 3 passed" in text and (tmp_path / "runs" / "desktop-greeter.html").is_file()
    # The python task's plot came home beside its transcript, and its report shows it inline.
    assert (tmp_path / "runs" / "python-plot.files" / "samples.png").is_file()
    plot_report = (tmp_path / "runs" / "python-plot.html").read_text()
    assert 'alt="screenshot figure-1.png" src="data:image/png;base64,' in plot_report
