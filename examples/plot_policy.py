"""The demo's stand-in for gpt-oss with the python tool; it lives in the package (see harmony_agent.runs.demo_kit)."""

from harmony_agent.runs.demo_kit.plot_policy import CODE, policy

__all__ = ["CODE", "policy"]
