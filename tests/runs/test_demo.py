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
