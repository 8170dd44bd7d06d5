"""``python -m harmony_agent.cli``: the same program as the ``harmony-agent`` console script."""

from harmony_agent.cli.app import app

app()
