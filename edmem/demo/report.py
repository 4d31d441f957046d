"""What ``edmem demo`` shows at the end: the summary table, ``summary.json`` and ``curves.png``.

Curves are read back from the TensorBoard files the pretraining and training runners already
write (one source of truth: the plot shows what TensorBoard shows), so the runners need no hook.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edmem.demo.questions import HELDOUT_BOTH, HELDOUT_FACT

# run folder -> (label, {tag: series name}); tags as the runners write them.
CURVE_SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "pretrain": ("pretraining", {"train/loss": "loss", "dev/decoder_recall@1": "dev decoder recall@1",
                                 "dev/final_recall@1": "dev final recall@1"}),
    "finetune": ("fine-tuning", {"train/loss": "loss", "dev/entity_id_accuracy": "dev accuracy"}),
    "baseline_no_pretrain": ("no-pretraining baseline", {"train/loss": "loss",
                                                        "dev/entity_id_accuracy": "dev accuracy"}),
}
SYSTEM_LABELS = {"edmem": "EDMem (pretrained memory)", "no_pretrain": "no pretraining",
                 "most_frequent": "most frequent answer"}
Series = list[tuple[int, float]]


def read_scalars(log_dir: Path) -> dict[str, Series]:
    """Every scalar series of a TensorBoard folder as ``{tag: [(step, value), ...]}`` (empty when
    the folder is missing). When a run wrote several event files the later points win per step."""
    if not log_dir.is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, dict[int, float]] = {}
    for event_file in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            points = series.setdefault(tag, {})
            for event in acc.Scalars(tag):
                points[int(event.step)] = float(event.value)
    return {tag: sorted(points.items()) for tag, points in series.items()}


def collect_curves(run_dir: Path) -> dict[str, dict[str, Series]]:
    """``{run folder: {series name: points}}`` for the series of :data:`CURVE_SOURCES`.

    The runners write recall and accuracy in percent; they become fractions like every other rate."""
    curves: dict[str, dict[str, Series]] = {}
    for folder, (_, tags) in CURVE_SOURCES.items():
        scalars = read_scalars(run_dir / folder / "tensorboard")
        picked: dict[str, Series] = {}
        for tag, name in tags.items():
            if tag in scalars:
                scale = 0.01 if tag.startswith("dev/") else 1.0
                picked[name] = [(step, value * scale) for step, value in scalars[tag]]
        curves[folder] = picked
    return curves


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{100 * value:5.1f}"
    return str(value)


def summary_table(summary: dict[str, Any]) -> str:
    """The table printed at the end of the demo (percentages of linkable test questions)."""
    columns = ("hits@1", "hits@5", "hits@10", "mrr", "em", "em_linkable")
    rows = [("edmem", summary["test"])] + list(summary["baselines"].items())
    width = max(len(SYSTEM_LABELS.get(name, name)) for name, _ in rows)
    header = f"{'system':<{width}}  " + "  ".join(f"{c:>11}" for c in columns)
    lines = [f"Test, all groups: {summary['test'].get('linkable_questions')} linkable of "
             f"{summary['test'].get('questions')} questions (figures in %; MRR x 100)", header,
             "-" * len(header)]
    for name, row in rows:
        lines.append(f"{SYSTEM_LABELS.get(name, name):<{width}}  " +
                     "  ".join(f"{_fmt(row.get(c)):>11}" for c in columns))
    lines += group_table(summary, width)
    goal = summary["goal"]
    both = summary.get("groups", {}).get("test", {}).get("edmem", {}).get(HELDOUT_BOTH, {}).get("hits@1")
    lines += ["", f"held-out facts hits@1 {100 * _held_out_facts(summary):.1f}% (goal >= 90%: "
              f"{'met' if goal['hits@1>=0.90'] else 'NOT met'}); held-out facts x held-out phrasings "
              f"{_fmt(both)}% (goal >= 85%: {'met' if goal.get('heldout_both_hits@1>=0.85') else 'NOT met'}); "
              f"margin over the best baseline "
              f"({SYSTEM_LABELS.get(summary['best_baseline'], summary['best_baseline'])}) "
              f"{100 * summary['margin_hits@1']:+.1f} points (goal >= 30: "
              f"{'met' if goal['margin>=0.30'] else 'NOT met'})",
              "(this run alone; the goals are on the mean of three seeds, benchmarks/demo_seeds.sh: "
              "one seed's groups move by a few points)", "",
              f"  {'stage':<22}{'wall s':>8}{'CPU s':>8}{'budget':>8}"]
    budgets = summary.get("budgets", {})
    cpu = summary.get("cpu_seconds", {})
    for stage, seconds in summary["seconds"].items():
        budget = budgets.get(stage)
        flag = "" if budget is None or seconds <= budget else "  over budget"
        shown = f"{budget:8.0f}" if budget is not None else f"{'':8}"
        lines.append(f"  {stage:<22}{seconds:8.1f}{cpu.get(stage, float('nan')):8.1f}{shown}{flag}")
    return "\n".join(lines)


GROUP_LABELS = {"heldout_fact/seen_phrasing": "held-out facts", "seen_fact/heldout_phrasing":
                "held-out phrasings", "heldout_fact/heldout_phrasing": "both held out"}


def _held_out_facts(summary: dict[str, Any]) -> float:
    groups = summary.get("groups", {}).get("test", {}).get("edmem", {})
    return groups.get(HELDOUT_FACT, {}).get("hits@1", summary["test"]["hits@1"])


def group_table(summary: dict[str, Any], width: int) -> list[str]:
    """hits@1 per question group and system, dev (what settings are chosen on) then test."""
    lines: list[str] = []
    for split in ("dev", "test"):
        by_system = summary.get("groups", {}).get(split, {})
        if not by_system:
            continue
        counts = next(iter(by_system.values()))
        header = f"{'hits@1, ' + split:<{width}}  " + "  ".join(
            f"{GROUP_LABELS[g] + ' (' + str(counts.get(g, {}).get('questions', 0)) + ')':>24}"
            for g in GROUP_LABELS)
        lines += ["", header, "-" * len(header)]
        for name in ("edmem", "no_pretrain", "most_frequent"):
            if name in by_system:
                lines.append(f"{SYSTEM_LABELS.get(name, name):<{width}}  " + "  ".join(
                    f"{_fmt(by_system[name].get(g, {}).get('hits@1')):>24}" for g in GROUP_LABELS))
    return lines


def write_summary(summary: dict[str, Any], run_dir: Path) -> None:
    """``summary.json`` (every figure) and ``summary.txt`` (the printed table)."""
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (run_dir / "summary.txt").write_text(summary_table(summary) + "\n", encoding="utf-8")


def plot_curves(curves: dict[str, dict[str, Series]], summary: dict[str, Any], path: Path) -> Path:
    """Four panels: pretraining loss, pretraining dev recall@1, fine-tuning loss / dev accuracy
    (pretrained vs random init), and test hits@k bars for the model and the baselines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (ax_pl, ax_pr), (ax_fl, ax_hits) = axes

    def draw(ax: Any, points: Series, label: str, **style: Any) -> None:
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, label=label, **style)

    pre = curves.get("pretrain", {})
    draw(ax_pl, pre.get("loss", []), "train loss (LM + EL)", lw=0.8)
    ax_pl.set(title="Pretraining loss", xlabel="optimizer step", ylabel="loss")
    for name in ("dev decoder recall@1", "dev final recall@1"):
        draw(ax_pr, pre.get(name, []), name, marker="o")
    ax_pr.set(title="Pretraining: dev recall@1 (masked mentions)",
              xlabel="optimizer step", ylabel="recall@1", ylim=(0, 1.02))

    ax_acc = ax_fl.twinx()
    for folder, color in (("finetune", "tab:blue"), ("baseline_no_pretrain", "tab:gray")):
        label = "pretrained" if folder == "finetune" else "random init"
        run = curves.get(folder, {})
        draw(ax_fl, run.get("loss", []), f"loss, {label}", color=color, lw=0.8)
        draw(ax_acc, run.get("dev accuracy", []), f"dev accuracy, {label}", color=color, ls="--", marker="o")
    ax_fl.set(title="Entity-linking fine-tuning", xlabel="optimizer step", ylabel="loss")
    ax_acc.set(ylabel="dev entity accuracy", ylim=(0, 1.02))

    rows = [("edmem", summary["test"])] + list(summary["baselines"].items())
    ks = [k for k in ("hits@1", "hits@5", "hits@10") if k in summary["test"]]
    width = 0.8 / max(1, len(rows))
    for i, (name, row) in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(ks))]
        bars = ax_hits.bar(xs, [row[k] for k in ks], width, label=SYSTEM_LABELS.get(name, name))
        ax_hits.bar_label(bars, fmt="%.2f", fontsize=7)
    ax_hits.set_xticks(range(len(ks)), ks)
    ax_hits.set(title="All test questions (three held-out groups)", ylabel="fraction",
                ylim=(0, 1.1))

    for ax in (ax_pl, ax_pr, ax_hits):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    handles = ax_fl.get_legend_handles_labels()
    extra = ax_acc.get_legend_handles_labels()
    if handles[0] or extra[0]:
        ax_fl.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=8, loc="upper right")
    fig.suptitle(f"edmem demo: held-out facts hits@1 {_held_out_facts(summary):.3f}, "
                 f"{summary['seconds'].get('total', 0):.0f}s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
