"""Shared helpers of the benchmark scripts: machine description, Markdown tables, atomic writes."""

from __future__ import annotations

import datetime
import os
import shlex
import sys
import tempfile
from pathlib import Path

import torch

from csrec.experiment import environment, peak_rss_mib  # noqa: F401 - re-exported for the benchmarks

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEFAULT_DATA_DIR = os.environ.get("CSREC_DATA_DIR") or str(ROOT.parent / "shared" / "data")


def machine_line() -> str:
    env = environment("cuda" if torch.cuda.is_available() else "cpu")
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = f", GPU {env['gpu']}" if "gpu" in env else ", no GPU"
    return (f"{datetime.date.today().isoformat()}; {env['cpu']}, {env['cpu_count']} cores, {mem_gib:.0f} GiB RAM{gpu}; "
            f"torch {env['torch']} with {env['torch_threads']} threads; python {env['python']}")


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def current_rss_mib() -> float:
    """Resident memory now (Linux), as opposed to ``peak_rss_mib``'s high-water mark."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def random_eval_split(n: int, n_items: int, width: int = 19, seed: int = 0):
    """``n`` random sequences of 3..``width`` items over a catalogue of ``n_items`` (full-ranking cost tests)."""
    import numpy as np

    from csrec.data import EvalSplit

    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, width + 1, size=n)
    inputs = rng.integers(1, n_items + 1, size=(n, width)) * (np.arange(width) < lengths[:, None])
    return EvalSplit(inputs=inputs.astype(np.int64), lengths=lengths.astype(np.int64),
                     targets=rng.integers(1, n_items + 1, size=n), positive=np.ones(n, bool), true_targets=None)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def read_markdown_table(path: Path) -> list[dict]:
    """The first Markdown table of ``path`` (a result this module wrote): one dict per row, by header."""
    lines = [line.strip() for line in Path(path).read_text().splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    if start is None:
        raise SystemExit(f"{path}: no Markdown table")
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        block.append([cell.strip() for cell in line.strip("|").split("|")])
    header, rows = block[0], block[2:]
    return [dict(zip(header, row)) for row in rows]


def write_result(name: str, title: str, body: str) -> Path:
    """Write bench/results/<name>.md atomically (title, machine, command, body) and print it."""
    text = f"### {title}\n\nMachine: {machine_line()}\n\nCommand: `{command_line()}`\n\n{body}\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    fd, tmp = tempfile.mkstemp(dir=RESULTS, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
    print(text)
    return path
