"""The demo's stand-in for gpt-oss with the browser; it lives in the package (see harmony_agent.runs.demo_kit)."""

from harmony_agent.runs.demo_kit.research_policy import QUESTION_WORD, policy

__all__ = ["QUESTION_WORD", "policy"]
