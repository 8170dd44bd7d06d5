"""The user's configuration file: defaults for the command line, so flags need not be repeated.

``~/.config/harmony-agent/config.toml`` (``$XDG_CONFIG_HOME`` honoured), or
the file ``HARMONY_AGENT_CONFIG`` names. Every key is optional; a task file's
keys and the flags on the command line override it, in that order. An unknown
key or a value of the wrong type is an error that names the file, so a typo
never silently falls back to a default.

.. code-block:: toml

    model = "gpt-oss:20b"
    tools = ["python", "browser"]
    sandbox = "docker"
    search = "duckduckgo"
    allow = ["example.org", "127.0.0.1"]
    approve = "ask"          # or "always" (as --yes)
    reasoning = "medium"
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The environment variable naming another config file.
CONFIG_ENV = "HARMONY_AGENT_CONFIG"


class ConfigError(ValueError):
    """The config file cannot be read or holds something it should not."""


class Config(BaseModel):
    """What a config file may set; ``None`` leaves the built-in default."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    tools: list[str] = Field(default_factory=list)
    instructions: str | None = None
    reasoning: Literal["low", "medium", "high"] | None = None
    max_steps: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    sandbox: Literal["auto", "docker", "bubblewrap", "unsandboxed"] | None = None
    search: str | None = None
    allow: list[str] = Field(default_factory=list)
    apps: list[str] = Field(default_factory=list)
    #: ``ask`` puts each tool call to you; ``always`` approves them all (as ``--yes``).
    approve: Literal["ask", "always"] = "ask"
    hide_analysis: bool = False


def config_path() -> Path:
    """Where the config file is looked for (it need not exist)."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        return Path(named).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "harmony-agent" / "config.toml"


def load_config(path: Path | None = None) -> Config:
    """The config file's settings; an empty :class:`Config` when the default file is absent.

    A file named by ``HARMONY_AGENT_CONFIG`` (or ``path``) must exist: naming
    one that is missing is a mistake worth hearing about.
    """
    named = path is not None or bool(os.environ.get(CONFIG_ENV))
    path = path or config_path()
    if not path.exists():
        if named:
            raise ConfigError(f"config file {path} does not exist ({CONFIG_ENV} names it)")
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"config file {path}: {problems}") from None
