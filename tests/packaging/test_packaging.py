"""The package as users get it: the wheel holds every file the code opens, and a clean install runs the demo.

The slow test builds the wheel, installs it into a fresh virtual environment
outside the checkout (dependencies from a wheelhouse cached under
/var/cache/harmony-agent, filled from the package registry the first time),
and runs the CLI from an empty temporary folder, where nothing of the
checkout can be imported by accident.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import ROOT
from helpers.available import require

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

#: Dependencies' wheels, kept between runs (the registry is asked only for what is missing).
WHEELHOUSE = Path(os.environ.get("HARMONY_AGENT_WHEELHOUSE", "/var/cache/harmony-agent/wheelhouse"))
#: The extras the demo needs on the host: Chromium's driver, the desktop's screen and input, docker.
EXTRAS = "browser,desktop,docker"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _package_folders() -> dict[str, Path]:
    """Import name -> folder of every package in the source tree (a folder with an __init__.py)."""
    roots = _pyproject()["tool"]["setuptools"]["package-dir"]
    found = {}
    for name, folder in roots.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base)
            dotted = ".".join((name, *relative.parts))
            if not any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
                found[dotted] = init.parent
    return found


def test_the_package_list_names_every_package_folder():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    folders = _package_folders()
    assert set(folders) - listed == set(), "package folders missing from pyproject's packages"
    assert listed - set(folders) == set(), "pyproject names packages that have no folder"


def _build_wheel(into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(into), str(ROOT)],
        check=True,
        cwd=into,
        timeout=600,
    )
    (wheel,) = into.glob("harmony_agent-*.whl")
    return wheel


def test_the_wheel_holds_every_data_file_of_the_source_tree(tmp_path):
    """Every non-Python file in a package folder is in the wheel (the code opens them by path)."""
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for dotted, folder in _package_folders().items():
        for file in folder.iterdir():
            if file.is_file() and file.suffix not in (".py", ".pyc"):
                missing += [] if f"{dotted.replace('.', '/')}/{file.name}" in names else [str(file)]
        for sub in folder.iterdir():  # data folders inside a package (site/, tasks/, python/)
            if sub.is_dir() and not (sub / "__init__.py").exists() and sub.name != "__pycache__":
                for file in sub.rglob("*"):
                    if file.is_file() and file.suffix != ".pyc":
                        inside = f"{dotted.replace('.', '/')}/{file.relative_to(folder).as_posix()}"
                        missing += [] if inside in names else [str(file)]
    assert missing == []
    for needed in (
        "harmony_agent/tools/browser/snapshot.js",
        "harmony_agent/tools/browser/hooks.js",
        "harmony_agent/sandboxes/images/python/Dockerfile",
        "harmony_agent/server/page.html",
        "harmony_agent/runs/demo_kit/tasks/python.yaml",
        "harmony_agent/runs/demo_kit/site/hours.html",
    ):
        assert needed in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


def _install(wheel: Path, venv: Path) -> Path:
    """A fresh venv with the wheel and its dependencies; offline from the wheelhouse when it has them all."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    target = f"{wheel}[{EXTRAS}]"
    offline = [str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(WHEELHOUSE), target]
    if WHEELHOUSE.is_dir() and subprocess.run(offline, capture_output=True, timeout=600).returncode == 0:
        return python
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    subprocess.run(  # the first time: fetch the dependencies' wheels once, into the cache
        [sys.executable, "-m", "pip", "wheel", "-q", "--find-links", str(WHEELHOUSE), "-w", str(WHEELHOUSE), target],
        check=True,
        timeout=900,
    )
    (WHEELHOUSE / wheel.name).unlink(missing_ok=True)  # the project's own wheel is built fresh each time
    subprocess.run(offline, check=True, timeout=600)
    return python


@pytest.mark.slow
def test_a_clean_install_of_the_wheel_runs_help_doctor_and_the_demo_from_any_folder(tmp_path):
    for kind in ("bubblewrap", "chromium", "desktop"):
        require(kind)
    built = tmp_path / "dist"
    built.mkdir()
    python = _install(_build_wheel(built), tmp_path / "venv")
    cli = python.parent / "harmony-agent"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["HOME"] = str(tmp_path / "home")

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=timeout)

    where = run(str(python), "-c", "import harmony_agent, sys; print(harmony_agent.__file__); print(sys.path)")
    assert where.returncode == 0, where.stderr
    module_file = Path(where.stdout.splitlines()[0])
    assert module_file.is_relative_to(tmp_path / "venv"), module_file
    assert str(ROOT) not in where.stdout.splitlines()[1]

    helped = run(str(cli), "--help")
    assert helped.returncode == 0, helped.stderr
    assert "demo" in helped.stdout and "Traceback" not in helped.stderr

    doctor = run(str(cli), "doctor", timeout=300)
    assert doctor.returncode in (0, 1), doctor.stderr  # 1: a required check failed, said in the table
    assert (
        "vocabulary: ok" in doctor.stdout and "Traceback" not in doctor.stderr + doctor.stdout
    )  # piped: a line a check

    demo = run(str(cli), "demo", timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "3 of 3" in (elsewhere / "runs" / "demo" / "report.html").read_text()
    assert (elsewhere / "runs" / "demo" / "runs" / "python-plot.jsonl").is_file()


def test_the_license_file_is_mit_and_matches_pyproject():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 The harmony-agent authors" in text
    assert "Permission is hereby granted, free of charge" in text
    project = _pyproject()["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
