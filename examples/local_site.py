"""The small local website for browser demos, tests and benchmarks (it ships in the package for the demo).

python -m examples.local_site        # serves until Ctrl-C, and prints its address
"""

from harmony_agent.runs.demo_kit.local_site import SITE, SiteHandler, catalog_page, main, serve_site

__all__ = ["SITE", "SiteHandler", "catalog_page", "main", "serve_site"]

if __name__ == "__main__":
    main()
