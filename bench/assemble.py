"""Rebuild BENCHMARKS.md from bench/BENCHMARKS.template.md and the tables in bench/results/.

    python bench/assemble.py

Each ``{{name}}`` in the template is replaced by bench/results/<name>.md (written by the bench
script of that name, with its machine line and command), or by a line saying it was not run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, ROOT  # noqa: E402

from csrec.atomic import write_atomic  # noqa: E402


def main() -> None:
    template = (ROOT / "bench" / "BENCHMARKS.template.md").read_text()

    def include(match: re.Match) -> str:
        path = RESULTS / f"{match.group(1)}.md"
        if path.is_file():
            return path.read_text().strip()
        return f"_Not run yet (bench/results/{match.group(1)}.md is missing; see the bench script named above)._"

    text = re.sub(r"\{\{(\w+)\}\}", include, template)
    write_atomic(ROOT / "BENCHMARKS.md", text)
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
