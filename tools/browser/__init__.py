"""The built-in ``browser`` tool on real Chromium: gpt-oss's search/open/find, actions, search backends, navigation safety."""

from harmony_agent.tools.browser.policy import NavigationPolicy
from harmony_agent.tools.browser.search import (
    DuckDuckGoSearch,
    ExaSearch,
    LocalSearch,
    SearchBackend,
    SearchResult,
    SearxngSearch,
    TavilySearch,
    YouSearch,
    backend_from_spec,
)
from harmony_agent.tools.browser.tool import CITATION, BrowserTool

__all__ = [
    "CITATION",
    "BrowserTool",
    "DuckDuckGoSearch",
    "ExaSearch",
    "LocalSearch",
    "NavigationPolicy",
    "SearchBackend",
    "SearchResult",
    "SearxngSearch",
    "TavilySearch",
    "YouSearch",
    "backend_from_spec",
]
