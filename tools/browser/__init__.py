"""The built-in ``browser`` tool on real Chromium: gpt-oss's search/open/find, actions, search backends, navigation safety."""

from .policy import NavigationPolicy
from .search import (DuckDuckGoSearch, ExaSearch, LocalSearch, SearchBackend, SearchResult, SearxngSearch,
                     TavilySearch, YouSearch, backend_from_spec)
from .tool import CITATION, BrowserTool

__all__ = ["CITATION", "BrowserTool", "DuckDuckGoSearch", "ExaSearch", "LocalSearch", "NavigationPolicy", "SearchBackend",
           "SearchResult", "SearxngSearch", "TavilySearch", "YouSearch", "backend_from_spec"]
