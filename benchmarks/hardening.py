"""The page battery's figures: ways a page tried to reach a forbidden local server, and what got through.

Runs ``tests/helpers/page_lures.py``'s battery twice in one process: with the policy
that allows only the page server (everything else must be contained), and with
private addresses allowed (how many lures really fire when nothing stops them,
so a contained lure is known to be a real attempt).

    python benchmarks/hardening.py [--quick]

``--quick`` waits 0.5 s instead of 2 s for late lures (timers, workers) after the battery, so CI can check in
well under a minute that the script still runs; the full run is the one whose figures count.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from harmony_agent.tools.browser import NavigationPolicy
from helpers import page_lures


def _lures(lines: list[str]) -> set[str]:
    return {match.group(1) for line in lines if (match := re.search(r"/lure/(\S+)", line))}


async def main(settle: float) -> None:
    guarded = await page_lures.run_battery(settle)
    original = NavigationPolicy.__post_init__

    def open_policy(self: NavigationPolicy) -> None:
        self.allow_private = True
        original(self)

    NavigationPolicy.__post_init__ = open_policy  # the control run: nothing refused
    try:
        control = await page_lures.run_battery(settle)
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="wait 0.5 s, not 2 s, for late lures")
    asyncio.run(main(0.5 if parser.parse_args().quick else 2.0))
