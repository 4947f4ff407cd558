#!/usr/bin/env python
"""Paste the benchmark tables (results/*.md) into README.md between their markers.

    <!-- results:NAME -->  ...replaced by results/NAME.md...  <!-- /results:NAME -->

so that no figure in the README is typed by hand.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def render(readme: str, results: Path) -> str:
    def fill(match: re.Match) -> str:
        name = match.group(1)
        source = results / f"{name}.md"
        if not source.exists():
            sys.exit(f"render_readme: {source} is missing; run its benchmark first")
        return f"<!-- results:{name} -->\n{source.read_text().strip()}\n<!-- /results:{name} -->"

    return re.sub(r"<!-- results:([\w.-]+) -->.*?<!-- /results:\1 -->", fill, readme, flags=re.S)


if __name__ == "__main__":
    path = ROOT / "README.md"
    path.write_text(render(path.read_text(), ROOT / "results"))
    print(f"updated {path}")
