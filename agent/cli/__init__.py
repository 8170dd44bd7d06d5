"""The ``harmony-agent`` command line: Typer commands over the agent, the runs and the servers."""
