#!/usr/bin/env python
"""What more CPU time buys: the default MLP model's validation −ELBO against cumulative training
minutes over its original run and its continuations, and the ResNet model's run beside it.

    python benchmarks/longer_training.py

Reads the training logs in results/training/ (sere_cpu, then sere_continue and sere_cooldown,
which started from the previous run's weights; resnet_cpu) and writes results/longer_training.md
and .png. The cost of the next nat is the minutes of the last stretch divided by the nats it gained.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchdata import write_results     # noqa: E402

MLP_STAGES = ("sere_cpu", "sere_continue", "sere_cooldown")


def read(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def chained(logs: Path) -> list:
    """(stage, epoch, cumulative minutes, validation −ELBO) over the MLP stages present."""
    points, minutes = [], 0.0
    for stage in MLP_STAGES:
        path = logs / f"{stage}.jsonl"
        if not path.exists():
            continue
        for record in read(path):
            minutes += record["seconds"] / 60
            points.append((stage, record["epoch"], minutes, -record["valid_elbo"]))
    return points


@click.command()
@click.option("--logs", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results" / "training")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results")
def main(logs, out_dir):
    points = chained(logs)
    stages = []
    for stage in MLP_STAGES:
        rows = [p for p in points if p[0] == stage]
        if rows:
            first_minutes = rows[0][2] - read(logs / f"{stage}.jsonl")[0]["seconds"] / 60
            before = [p for p in points if p[2] <= first_minutes]
            start_elbo = before[-1][3] if before else None
            stages.append({"stage": stage, "epochs": rows[-1][1], "minutes": rows[-1][2] - first_minutes,
                           "start_valid": start_elbo, "end_valid": rows[-1][3],
                           "best_valid": min(p[3] for p in rows)})
    first, later = stages[0], stages[1:]
    original = [p for p in points if p[0] == MLP_STAGES[0]]
    tail = [p for p in original if p[1] >= original[-1][1] - 100]        # the original run's last 100 epochs
    report = {"stages": stages, "total_minutes": points[-1][2],
              "original_last100_gain_nats": tail[0][3] - tail[-1][3], "original_last100_minutes": tail[-1][2] - tail[0][2]}
    if later:
        report["later_minutes"] = sum(s["minutes"] for s in later)
        report["later_net_gain_nats"] = first["end_valid"] - min(s["best_valid"] for s in later)
    resnet = logs / "resnet_cpu.jsonl"
    if resnet.exists():
        minutes, curve = 0.0, []
        for record in read(resnet):
            minutes += record["seconds"] / 60
            curve.append((record["epoch"], minutes, -record["valid_elbo"]))
        report["resnet"] = curve
    write_results(out_dir, "longer_training", report, render(report))
    plot(points, report.get("resnet"), out_dir / "longer_training.png")
    click.echo(render(report))


def render(r: dict) -> str:
    lines = ["The default MLP model, trained on in stages from the previous stage's weights; validation −ELBO on "
             "2,000 held-out training-set digits (`python benchmarks/longer_training.py`).", "",
             "| stage | epochs | CPU minutes | valid −ELBO at start | at end | best |", "|---|---|---|---|---|---|"]
    for s in r["stages"]:
        start = f"{s['start_valid']:.2f}" if s["start_valid"] is not None else "–"
        lines.append(f"| {s['stage']} | {s['epochs']} | {s['minutes']:.0f} | {start} | {s['end_valid']:.2f} | "
                     f"{s['best_valid']:.2f} |")
    lines += ["", f"* The original run's last 100 epochs (its cosine cool-down) gained "
              f"{r['original_last100_gain_nats']:.2f} nats in {r['original_last100_minutes']:.0f} CPU minutes."]
    if "later_minutes" in r:
        gain = r["later_net_gain_nats"]
        pace = (f"**{r['later_minutes'] / gain / 60:.1f} CPU hours per nat** at that pace" if gain > 0
                else "no net gain")
        lines += [f"* The continuations ({r['later_minutes']:.0f} CPU minutes more) gained {gain:.2f} nats over the "
                  f"shipped weights' {r['stages'][0]['end_valid']:.2f} at best: {pace}. Restarting the step size at "
                  f"4e-4 first lost ground that the cool-down then had to win back."]
    if "resnet" in r:
        epoch, minutes, elbo = r["resnet"][-1]
        lines += [f"* The ResNet model on the same core: {elbo:.2f} nats after {epoch} epochs ({minutes:.0f} min)."]
    return "\n".join(lines) + "\n"


def plot(points: list, resnet, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for stage in MLP_STAGES:
        rows = [p for p in points if p[0] == stage]
        if rows:
            ax.plot([p[2] for p in rows], [p[3] for p in rows], label=f"MLP: {stage}")
    if resnet:
        ax.plot([p[1] for p in resnet], [p[2] for p in resnet], "k--", label="ResNet: resnet_cpu")
    ax.set_xlabel("training minutes on one CPU core")
    ax.set_ylabel("validation −ELBO (nats)")
    ax.set_ylim(top=100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
