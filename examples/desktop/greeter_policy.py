"""The demo's stand-in for gpt-oss on the desktop; it lives in the package (see harmony_agent.runs.demo_kit)."""

from harmony_agent.runs.demo_kit.greeter_policy import NAME, policy

__all__ = ["NAME", "policy"]
