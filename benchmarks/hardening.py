"""The page battery's figures: ways a page tried to reach a forbidden local server, and what got through.

Runs ``tests/page_lures.py``'s battery twice in one process: with the policy
that allows only the page server (everything else must be contained), and with
private addresses allowed (how many lures really fire when nothing stops them,
so a contained lure is known to be a real attempt).

    python benchmarks/hardening.py
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import page_lures

from harmony_agent.tools.browser import NavigationPolicy


def _lures(lines: list[str]) -> set[str]:
    return {match.group(1) for line in lines if (match := re.search(r"/lure/(\S+)", line))}


async def main() -> None:
    guarded = await page_lures.run_battery()
    original = NavigationPolicy.__post_init__

    def open_policy(self: NavigationPolicy) -> None:
        self.allow_private = True
        original(self)

    NavigationPolicy.__post_init__ = open_policy  # the control run: nothing refused
    try:
        control = await page_lures.run_battery()
    finally:
        NavigationPolicy.__post_init__ = original
    fired = _lures(control.leaks)
    print(f"{'run':<22}{'tried':>7}{'fired':>7}{'contained':>11}{'leaks':>7}{'crashes':>9}{'left behind':>13}")
    print(
        f"{'policy (page only)':<22}{guarded.tried:>7}{'':>7}{guarded.contained:>11}{len(guarded.leaks):>7}"
        f"{len(guarded.crashes):>9}{len(guarded.left_behind):>13}"
    )
    print(
        f"{'control (all allowed)':<22}{control.tried:>7}{len(fired):>7}{'':>11}{len(control.leaks):>7}"
        f"{len(control.crashes):>9}{len(control.left_behind):>13}"
    )
    for line in guarded.leaks + guarded.crashes + guarded.left_behind:
        print("  !", line)


if __name__ == "__main__":
    asyncio.run(main())
