"""Tables 3, 4 and 5 of the paper, as Markdown and LaTeX.

* Table 3: Recall@10 and NDCG@10 (%) of every method's best trial, per dataset (row blocks) ×
  method (rows) × backbone (column pairs); best per column and dataset in bold; ``*`` / ``†``
  significance vs Base / SoftRec (:mod:`csrec.report.stats`).
* Table 4: the same with the filtered Recall+@10 / NDCG+@10 (positively rated test answers),
  for the datasets with ratings.
* Table T (synthetic data only): the same against the *true* next item the generator recorded.
* Table 5: the teachers' own test metrics (plain, + and −) beside the Base student's.
* Table 3 beside the paper: each Table 3 cell next to the paper's published value
  (:mod:`csrec.report.paper`) and their difference, for the datasets the paper reports.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from csrec.methods.config import METHODS, value_text
from csrec.report.paper import PAPER_TABLE3
from csrec.report.runs import Run, backbone_label, dataset_label, method_label
from csrec.report.stats import (ALPHA, MARKS, across_seed_vectors, finished_seeds, seed_pairs, significance_marks,
                                 significantly_better)


@dataclass
class Cell:
    value: float | None  # a fraction; shown in %
    bold: bool = False
    mark: str = ""
    std: float | None = None  # over seeds, when the value is a mean over several
    seeds: int = 1
    signed: bool = False  # a difference: shown with its sign

    def text(self) -> str:
        if self.value is None or math.isnan(self.value):
            return "–"
        number = f"{100 * self.value:+.2f}" if self.signed else f"{100 * self.value:.2f}"
        return number + ("" if self.std is None else f" ± {100 * self.std:.2f}")


@dataclass
class Table:
    """A table with grouped columns: ``groups`` = [(group label, [column labels])]."""

    title: str
    key: str
    row_header: list[str]
    groups: list[tuple[str, list[str]]]
    rows: list[tuple[list[str], list[Cell]]] = field(default_factory=list)  # (row labels, cells)
    notes: list[str] = field(default_factory=list)
    block_starts: set = field(default_factory=set)  # row indexes that start a new block (a rule in LaTeX)
    significance: list[dict] = field(default_factory=list)
    row_keys: list[tuple] = field(default_factory=list)  # per row: what it is (Tables 3/4: dataset, method)
    group_keys: list[str] = field(default_factory=list)  # per group: what it is (Tables 3/4: the backbone)

    @property
    def empty(self) -> bool:
        return not self.rows

    def markdown(self) -> str:
        columns = [f"{g} {c}" if g else c for g, cs in self.groups for c in cs]
        header = self.row_header + columns
        lines = [f"**{self.title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(self.row_header)
                 + "---:|" * len(columns)]
        for labels, cells in self.rows:
            texts = []
            for cell in cells:
                text = cell.text()
                if cell.bold and text != "–":
                    text = f"**{text}**"
                texts.append(text + cell.mark.replace("*", "\\*"))
            lines.append("| " + " | ".join(labels + texts) + " |")
        lines += [""] + [f"{n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        n_label = len(self.row_header)
        spec = "l" * n_label + "".join("r" * len(cs) for _, cs in self.groups)
        out = ["\\begin{table}[t]", "\\centering", "\\small",
               f"\\caption{{{_tex(self.title)} {_tex(' '.join(self.notes))}}}", f"\\label{{tab:{self.key}}}",
               f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
        if any(g for g, _ in self.groups):
            heads, rules, col = [], [], n_label + 1
            for group, cs in self.groups:
                heads.append(f"\\multicolumn{{{len(cs)}}}{{c}}{{{_tex(group)}}}")
                rules.append(f"\\cmidrule(lr){{{col}-{col + len(cs) - 1}}}")
                col += len(cs)
            out.append(" & " * n_label + " & ".join(heads) + " \\\\")
            out.append("".join(rules))
        out.append(" & ".join([_tex(h) for h in self.row_header] + [_tex(c) for _, cs in self.groups for c in cs])
                   + " \\\\")
        out.append("\\midrule")
        for i, (labels, cells) in enumerate(self.rows):
            if i in self.block_starts and i > 0:
                out.append("\\midrule")
            texts = []
            for cell in cells:
                text = cell.text()
                if cell.bold and text != "–":
                    text = f"\\textbf{{{text}}}"
                if cell.mark:
                    text += f"$^{{{cell.mark.replace('†', chr(92) + 'dagger ').strip()}}}$"
                texts.append(text)
            out.append(" & ".join([_tex(x) for x in labels] + texts) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
        return "\n".join(out) + "\n"


def _tex(text: str) -> str:
    replace = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "_": "\\_", "#": "\\#", "$": "\\$",
               "{": "\\{", "}": "\\}", "†": "$\\dagger$", "−": "$-$", "β": "$\\beta$", "Δ": "$\\Delta$", "α": "$\\alpha$",
               "–": "--", "×": "$\\times$", "≥": "$\\geq$", "<": "$<$", ">": "$>$"}
    return "".join(replace.get(ch, ch) for ch in str(text))


def _bold_best(rows: list[list[Cell]], lower_is_better: set[int] = frozenset()) -> None:
    """Bold the best displayed value of each column (ties all bold)."""
    if not rows:
        return
    for j in range(len(rows[0])):
        shown = [round(100 * c[j].value, 2) for c in rows if c[j].value is not None and not math.isnan(c[j].value)]
        if not shown:
            continue
        target = min(shown) if j in lower_is_better else max(shown)
        for cells in rows:
            cell = cells[j]
            if cell.value is not None and not math.isnan(cell.value) and round(100 * cell.value, 2) == target:
                cell.bold = True


# --- Tables 3 and 4 -------------------------------------------------------------------------------
KINDS = {
    # key: (title, [(metric vector, column label)], mask key or None, results column per metric)
    "table3": ("Table 3: Recall@10 and NDCG@10 (%) of each method's best configuration (chosen on validation)",
               [("recall@10", "RC (%)"), ("ndcg@10", "NG (%)")], None, {"recall@10": "test/recall@10",
                                                                        "ndcg@10": "test/ndcg@10"}),
    "table4": ("Table 4: filtered Recall+@10 and NDCG+@10 (%) over the positively rated test answers",
               [("recall@10", "RC+ (%)"), ("ndcg@10", "NG+ (%)")], "test_positive",
               {"recall@10": "test/recall+@10", "ndcg@10": "test/ndcg+@10"}),
    "table4_negative": ("Table 4 (continued): Recall−@10 and NDCG−@10 (%) over the test answers rated below 4",
                        [("recall@10", "RC− (%)"), ("ndcg@10", "NG− (%)")], "test_negative",
                        {"recall@10": "test/recall-@10", "ndcg@10": "test/ndcg-@10"}),
    "table_true": ("Table T (synthetic data): Recall@10 and NDCG@10 (%) against the true next item",
                   [("true:recall@10", "true RC (%)"), ("true:ndcg@10", "true NG (%)")], None,
                   {"true:recall@10": "test/true:recall@10", "true:ndcg@10": "test/true:ndcg@10"}),
}


def has_ratings(run: Run, dataset: str) -> bool:
    """Some test answers are rated positive and some are not (so + differs from the plain metric)."""
    vectors = [v for (d, _, _), v in run.best.items() if d == dataset]
    if vectors:
        return any(bool(v["test_positive"].any() and not v["test_positive"].all()) for v in vectors)
    main = run.main[run.main["dataset"] == dataset]
    return "test/recall-@10" in main and main["test/recall-@10"].notna().any()


def has_truth(run: Run, dataset: str) -> bool:
    main = run.main[run.main["dataset"] == dataset]
    return "test/true:recall@10" in main and main["test/true:recall@10"].notna().any()


def _mask(vectors: dict, mask_key: str | None):
    if mask_key is None:
        return slice(None)
    if mask_key == "test_negative":
        return ~np.asarray(vectors["test_positive"], dtype=bool)
    return vectors[mask_key]


def main_table(run: Run, kind: str = "table3") -> Table:
    title, metrics, mask_key, columns = KINDS[kind]
    negative = kind == "table4_negative"  # neither higher nor lower is simply better: no bold, no marks
    if kind in ("table4", "table4_negative"):
        datasets = [d for d in run.datasets() if has_ratings(run, d)]
    elif kind == "table_true":
        datasets = [d for d in run.datasets() if has_truth(run, d)]
    else:
        datasets = run.datasets()
    backbones = [b for b in run.backbones() if any(b in run.backbones(d) for d in datasets)]
    table = Table(title=title, key=kind, row_header=["Dataset", "Method"],
                  groups=[(backbone_label(b), [label for _, label in metrics]) for b in backbones],
                  group_keys=list(backbones))
    untested: set[str] = set()
    for dataset in datasets:
        block: list[list[Cell]] = []
        methods = [m for m in run.methods(dataset)]
        marks = {}
        seeds = {}
        for backbone in backbones:
            vectors = {m: run.best[(dataset, backbone, m)] for m in methods if (dataset, backbone, m) in run.best}
            seeds[backbone] = run.seed_values(dataset, backbone, {metric: columns[metric] for metric, _ in metrics})
            for metric, label in metrics if not negative else []:
                per_seed = {m: v[metric] for m, v in (seeds[backbone] or {}).items() if metric in v}
                for method, entry in significance_marks(vectors, metric, mask_key, seeds=per_seed).items():
                    marks[(backbone, method, metric)] = entry
                    table.significance.append({
                        "table": kind, "dataset": dataset, "backbone": backbone, "method": method, "metric": label,
                        **{f"{field}_vs_{reference}": entry.get(f"{field}_vs_{reference}", empty)
                           for field, empty in (("p", math.nan), ("pairs", 0), ("paired_over", ""))
                           for reference, _ in MARKS},
                        "mark": entry["mark"],
                    })
        table.block_starts.add(len(table.rows))
        for i, method in enumerate(methods):
            cells = []
            for backbone in backbones:
                vectors = run.best.get((dataset, backbone, method))
                row = run.best_row(dataset, backbone, method)
                seeded = (seeds.get(backbone) or {}).get(method)
                for metric, _ in metrics:
                    value = None
                    if seeded is not None and metric in seeded:
                        values = finished_seeds(seeded[metric])
                        mark = marks.get((backbone, method, metric), {}).get("mark", "")
                        cells.append(Cell(float(np.mean(values)), mark=mark,
                                          std=float(np.std(values, ddof=1)) if len(values) > 1 else None,
                                          seeds=len(values)))
                        continue
                    if vectors is not None and metric in vectors:
                        mask = _mask(vectors, mask_key)
                        chosen = vectors[metric][mask]
                        value = float(np.mean(chosen)) if np.size(chosen) else None
                    elif row is not None and pd.notna(row.get(columns[metric], np.nan)):
                        value = float(row[columns[metric]])
                        if method != "base":
                            untested.add(f"{dataset_label(dataset)} / {backbone_label(backbone)} / "
                                         f"{method_label(method)}")
                    mark = marks.get((backbone, method, metric), {}).get("mark", "")
                    cells.append(Cell(value, mark=mark))
            block.append(cells)
            table.rows.append(([dataset_label(dataset) if i == 0 else "", method_label(method)], cells))
            table.row_keys.append((dataset, method))
        if not negative:
            _bold_best(block)
    if negative:
        table.notes = ["RC− = Recall@10 and NG− = NDCG@10 over the test answers rated below 4 only: how well a method "
                       "predicts interactions the user then rated poorly. Read it beside Table 4: a method whose gain "
                       "over Base is larger on + than on − ranks the well-rated answers higher, which is the paper's "
                       "claim of robustness to noisy feedback.",
                       "No bold and no significance marks: a higher score here is not simply better."]
        return table
    table.notes = [
        "RC = Recall@10, NG = NDCG@10" + (", + = over positively rated test answers only" if kind == "table4" else "")
        + (", true = against the true next item the generator recorded (before noise)" if kind == "table_true"
           else "") + ".",
        "Bold: the highest score of its column within the dataset.",
        f"Marks: * significantly better than Base, † significantly better than SoftRec (two-sided paired t-test "
        f"over the test sequences{', positively rated only' if kind == 'table4' else ''}, p < {ALPHA}).",
    ]
    seeded = sorted({c.seeds for _, cells in table.rows for c in cells if c.std is not None})
    if seeded:
        table.notes.append(
            f"Cells with ± are the mean ± standard deviation over {', '.join(map(str, seeded))} seeds (the configuration "
            "chosen on validation trained again per seed, its teachers too); their marks come from the same t-test "
            "paired across the seeds both methods ran (significance.csv: paired_over_vs_base / _vs_softrec = seeds) "
            "instead of sequences, wherever the two share two seeds or more.")
    if untested:
        table.notes.append("Not tested (no per-sequence test vectors of the best trial, so no mark either way): "
                           + ", ".join(sorted(untested)) + ".")
    return table


# --- beyond seed noise --------------------------------------------------------------------------------
def seed_noise_paragraph(dataset: str, backbone: str, per_seed: dict[str, dict[str, np.ndarray]],
                         metric: str = "recall@10", label: str = "Recall@10") -> str | None:
    """Whether each method beats Base and SoftRec beyond seed noise, for one (dataset, backbone).

    ``per_seed``: method → {metric: test value per seed index} (methods that ran several seeds).
    For every method against each reference, the per-seed differences (paired by seed index, over
    the seeds both have; a count other than Base's is named): their mean ± standard deviation in
    points and the paired t-test's p; a gain holds beyond seed noise when p < ALPHA and the mean is
    higher, the rule of the tables' marks.  None when no pair of methods shares two seeds.
    """
    vectors = across_seed_vectors({m: v for m, v in per_seed.items() if metric in v})
    if vectors is None:
        return None
    seeds = {m: len(finished_seeds(v[metric])) for m, v in vectors.items()}
    n = seeds["base"] if seeds.get("base", 0) >= 2 else max(seeds.values())
    parts, beyond = [], []
    for reference in ("base", "softrec"):
        if reference not in vectors:
            continue
        gains = []
        for method in sorted(vectors, key=lambda m: METHODS.index(m) if m in METHODS else len(METHODS)):
            if method in (reference, "base"):
                continue
            mine, theirs = seed_pairs(vectors[method][metric], vectors[reference][metric])
            common = len(mine)
            if common < 2:
                continue
            diff = 100 * (mine - theirs)
            better, p = significantly_better(mine, theirs)
            gains.append(f"{method_label(method)} {round(diff.mean(), 2) + 0.0:+.2f} ± {diff.std(ddof=1):.2f} "
                         f"(p = {'–' if math.isnan(p) else f'{p:.2g}'}" + (f", {common} seeds" if common != n else "")
                         + ")")
            if better:
                beyond.append(f"{method_label(method)} over {method_label(reference)}")
        if gains:
            parts.append(f"over {method_label(reference)}, " + ", ".join(gains))
    if not parts:
        return None
    return (f"**{backbone_label(backbone)} on {dataset_label(dataset)}, {n} seeds.** Test {label} gain in points, "
            f"mean ± std of the per-seed differences (paired t-test p): " + "; ".join(parts) + ". "
            f"Beyond seed noise (p < {ALPHA:g}, higher mean): " + (", ".join(beyond) if beyond else "none") + ".")


def pooled_seed_std(per_seed_cells: list[np.ndarray]) -> tuple[float, int] | None:
    """The seed-to-seed standard deviation of one cell's test metric, pooled over cells that ran
    several seeds (each cell's variance weighted by its degrees of freedom), and the cell count;
    None when no cell has two finished seeds."""
    spreads = [(np.var(v, ddof=1), len(v) - 1) for v in map(finished_seeds, per_seed_cells) if len(v) >= 2]
    if not spreads:
        return None
    return float(np.sqrt(sum(var * df for var, df in spreads) / sum(df for _, df in spreads))), len(spreads)


def single_seed_paragraph(dataset: str, values: dict[str, dict[str, float]], sigma: tuple[float, int],
                          label: str = "Recall@10") -> str | None:
    """What seed noise means for the backbones of ``dataset`` that ran one seed (``values``:
    backbone → {method: test value}), given the pooled seed std ``sigma`` (:func:`pooled_seed_std`,
    from the dataset's seeded cells).  No test across seeds is possible for them; the difference of
    two single runs has a std of about √2·σ, so a gain is called larger than seed noise when it exceeds
    2√2·σ (about two standard deviations).  None when no backbone has a method beside Base."""
    gains, beyond = [], []
    for backbone, cells in values.items():
        parts = []
        for method in [m for m in METHODS if m in cells and m != "base"]:
            versus = [(ref, 100 * (cells[method] - cells[ref])) for ref in ("base", "softrec")
                      if ref in cells and ref != method]
            if not versus:
                continue
            parts.append(f"{method_label(method)} " + " / ".join(
                f"{round(d, 2) + 0.0:+.2f}" for _, d in versus))
            beyond += [f"{backbone_label(backbone)} {method_label(method)} over {method_label(ref)}"
                       for ref, d in versus if d > 2 * math.sqrt(2) * 100 * sigma[0]]
        if parts:
            gains.append(f"{backbone_label(backbone)}: " + ", ".join(parts))
    if not gains:
        return None
    names = ", ".join(backbone_label(b) for b in values)
    text = (f"**One seed: {names} on {dataset_label(dataset)}.** No test across seeds is possible for these "
            f"cells; their marks come from the per-sequence test, which says nothing about seed noise. Test "
            f"{label} gain in points over Base / over SoftRec: " + "; ".join(gains) + ".")
    std = 100 * sigma[0]
    return text + (f" The seed-to-seed std of one cell's test {label}, pooled over the {sigma[1]} cells of this "
                   f"dataset that ran several seeds, is σ = {std:.2f} points, so the difference of two single runs "
                   f"varies by about √2σ = {math.sqrt(2) * std:.2f}; gains above 2√2σ = {2 * math.sqrt(2) * std:.2f} "
                   f"points: " + (", ".join(beyond) if beyond else "none") + ".")


def seed_noise_section(run: Run) -> list[str]:
    """The report's paragraphs on which gains hold beyond seed noise: one per dataset and backbone
    whose cells ran several seeds (:func:`seed_noise_paragraph`), then, where a dataset has both,
    one for its one-seed backbones (:func:`single_seed_paragraph`); empty when no cell ran seeds."""
    paragraphs = []
    for dataset in run.datasets():
        seeded_cells, single = [], {}
        for backbone in run.backbones(dataset):
            per_seed = run.seed_values(dataset, backbone, {"recall@10": "test/recall@10"}) or {}
            text = seed_noise_paragraph(dataset, backbone, per_seed)
            if text is not None:
                paragraphs.append(text)
            seeded_cells += [v["recall@10"] for v in per_seed.values() if "recall@10" in v]
            if not per_seed:
                rows = {m: run.best_row(dataset, backbone, m) for m in run.methods(dataset, backbone)}
                single[backbone] = {m: float(r["test/recall@10"]) for m, r in rows.items()
                                    if r is not None and not pd.isna(r.get("test/recall@10"))}
        sigma = pooled_seed_std(seeded_cells)
        if sigma is not None and single:
            text = single_seed_paragraph(dataset, single, sigma)
            if text is not None:
                paragraphs.append(text)
    return paragraphs


# --- Table 3 beside the paper ---------------------------------------------------------------------
#: How far (Recall@10 points) a cell may be from the paper's before the table names it.
PAPER_TOLERANCE = 1.5


def paper_table(table3: Table, paper: dict | None = None, tolerance: float = PAPER_TOLERANCE) -> Table:
    """Every cell of ``table3`` (:func:`main_table`) beside the paper's value and the difference,
    one row per (dataset, backbone, method) that the paper reports (``paper``: default
    :data:`csrec.report.paper.PAPER_TABLE3`, in %).  Empty when the paper reports none of them."""
    paper = PAPER_TABLE3 if paper is None else paper
    table = Table(title="Table 3 beside the paper: this run's Recall@10 and NDCG@10 (%) and the paper's",
                  key="table3_paper", row_header=["Dataset", "Backbone", "Method"],
                  groups=[("Recall@10", ["csrec", "paper", "Δ"]), ("NDCG@10", ["csrec", "paper", "Δ"])])
    far, seeded = [], False
    datasets = list(dict.fromkeys(dataset for dataset, _ in table3.row_keys))
    for dataset in datasets:
        first_of_dataset = True
        for b, backbone in enumerate(table3.group_keys):
            first_of_backbone = True
            for (_, cells), (row_dataset, method) in zip(table3.rows, table3.row_keys):
                published = paper.get((dataset, backbone, method))
                ours = cells[2 * b: 2 * b + 2]
                if row_dataset != dataset or published is None or all(c.value is None or math.isnan(c.value)
                                                                       for c in ours):
                    continue
                row = []
                for cell, value in zip(ours, published):
                    seeded |= cell.std is not None
                    delta = None if cell.value is None or math.isnan(cell.value) else cell.value - value / 100
                    row += [dataclasses.replace(cell, bold=False), Cell(value / 100), Cell(delta, signed=True)]
                if row[2].value is not None and abs(100 * row[2].value) > tolerance:
                    far.append(f"{dataset_label(dataset)} / {backbone_label(backbone)} / {method_label(method)}")
                if first_of_backbone:
                    table.block_starts.add(len(table.rows))
                table.rows.append(([dataset_label(dataset) if first_of_dataset else "",
                                    backbone_label(backbone) if first_of_backbone else "", method_label(method)], row))
                table.row_keys.append((dataset, backbone, method))
                first_of_dataset = first_of_backbone = False
    table.notes = [
        "csrec: this run's Table 3 cell (marks as there); paper: the paper's Table 3; Δ = csrec − paper, in points.",
        f"More than {tolerance:g} points of Recall@10 from the paper: " + (", ".join(far) if far else "none") + ".",
    ]
    if seeded:
        table.notes.append("Cells with ± are the mean ± standard deviation over seeds; Δ is taken from the mean. "
                           "The paper reports single runs.")
    return table


# --- Table 5 ----------------------------------------------------------------------------------------
TEACHER_COLUMNS = [("recall@10", "RC"), ("ndcg@10", "NG"), ("recall+@10", "RC+"), ("ndcg+@10", "NG+"),
                   ("recall-@10", "RC−"), ("ndcg-@10", "NG−")]


def _teacher_label(method: str, info: dict, index: int) -> str:
    spec = info.get("spec") or {}
    role = info.get("role", "teacher")
    if role == "main":
        alpha = value_text(spec.get("alpha"))
        tail = "with" if spec.get("expectation_term", True) else "without"
        return f"{method_label(method)} teacher g1 (robust, α={alpha}, {tail} expectation term)"
    if role == "side":
        return f"{method_label(method)} side teacher g2 (p={value_text(spec.get('subsample'))})"
    parts = [f"seed {spec.get('seed')}"] if spec.get("seed") is not None else []
    if spec.get("subsample") is not None:
        parts.append(f"p={value_text(spec.get('subsample'))}, subset {spec.get('subsample_seed')}")
    return f"{method_label(method)} teacher {index}" + (f" ({', '.join(parts)})" if parts else "")


def teacher_table(run: Run) -> Table:
    """Table 5: per dataset and backbone, the Base student and every teacher of the best CSRec trials."""
    any_ratings = any(has_ratings(run, d) for d in run.datasets())
    columns = [c for c in TEACHER_COLUMNS if any_ratings or c[0] in ("recall@10", "ndcg@10")]
    table = Table(
        title="Table 5: test Recall@10 / NDCG@10 (%) of the teachers of each CSRec variant's best trial, "
              "beside the Base student",
        key="table5", row_header=["Dataset", "Backbone", "Model"], groups=[("", [label for _, label in columns])])
    minus = {j for j, (metric, _) in enumerate(columns) if "-" in metric}
    for dataset in run.datasets():
        for backbone in run.backbones(dataset):
            rows: list[tuple[str, dict]] = []
            base = run.best_row(dataset, backbone, "base")
            if base is not None:
                rows.append(("Base (student)", {m: base.get(f"test/{m}") for m, _ in columns}))
            for method in ("csrec-m", "csrec-d", "csrec-t"):
                plain = 0
                for info in run.teacher_infos(dataset, backbone, method):
                    if info.get("role", "teacher") == "teacher":
                        plain += 1
                    rows.append((_teacher_label(method, info, plain), info.get("test") or {}))
            if len(rows) <= (1 if base is not None else 0):
                continue  # no teacher: nothing to compare
            block = []
            table.block_starts.add(len(table.rows))
            for i, (label, metrics) in enumerate(rows):
                cells = []
                for metric, _ in columns:
                    value = metrics.get(metric)
                    value = None if value is None or pd.isna(value) else float(value)
                    cells.append(Cell(value))
                block.append(cells)
                first = i == 0
                table.rows.append(([dataset_label(dataset) if first else "", backbone_label(backbone) if first else "",
                                    label], cells))
            _bold_best(block, lower_is_better=minus)
    table.notes = [
        "RC = Recall@10, NG = NDCG@10; + over positively rated test answers, − over the others (disliked, "
        "i.e. noisy interactions).",
        "Bold: the highest score of its column within the dataset and backbone (for the − columns the lowest, "
        "since a high − score means fitting disliked interactions).",
        "Teachers are those of each CSRec variant's best trial on validation.",
    ]
    return table
