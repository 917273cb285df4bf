"""The pipeline's last stage: the tables, and the pictures (or their text forms without matplotlib).

Held-out greedy accuracy of every model by difficulty level; parameters, format
rate, thinking length and training seconds; and four pictures: R1-Zero's RL
curves, the MoE base's expert load over pretraining, its layer-0 expert x token
class heat-map (moe/routing.py), and the accuracy bars. Without matplotlib the same
figures print as text (experiment/plots.py).
"""

from __future__ import annotations

from pathlib import Path

from toyds.evaluate.accuracy import format_table
from toyds.experiment import plots
from toyds.moe.routing import specialisation


def report(out: Path, task, metrics: dict, base, kept, log) -> list[str]:
    """5. the tables, and the pictures (or their text forms without matplotlib); returns the pictures' paths."""
    levels = list(task.levels)
    rows = {n: {"accuracy": m["accuracy"], "by_difficulty": {d: {"accuracy": a} for d, a in m["by_difficulty"].items()}}
            for n, m in metrics.items()}
    log(f"\nheld-out accuracy (greedy) by difficulty ({task.name}):")
    log(format_table(rows, levels, unit=task.level_unit))
    log(f"\n{'':<18}{'params':>10}{'active':>10}{'accuracy':>10}{'format':>8}{'think len':>11}{'train s':>9}")
    for n, m in metrics.items():
        log(f"{n:<18}{m['params_total']:>10,}{m['params_active']:>10,}{m['accuracy']:>10.3f}{m['format_rate']:>8.3f}"
            f"{m['mean_think_length']:>11.1f}{m['seconds']:>9.0f}")
    hist = {"r1_zero": metrics["r1_zero"]["history"]}
    curve = metrics["base"]["load_curve"]
    classes, share = specialisation(base, [p + c for p, c in kept[:300]], layer=0)
    cols = [f"e{e}" for e in range(share.shape[1])]
    drawn = [
        plots.rl_curves(hist, out / "rl_curves.png"),
        plots.expert_load([s for s, _ in curve], [l for _, l in curve], out / "expert_load.png",
                          "base pretraining: layer 0 expert load"),
        plots.heatmap(share.tolist(), classes, cols, out / "expert_heatmap.png", "layer 0: token class x expert"),
        plots.bars({n: m["accuracy"] for n, m in metrics.items()}, out / "accuracy.png", "held-out accuracy"),
    ]
    pictures = [str(p) for p in drawn if p]
    if pictures:
        log("\npictures: " + ", ".join(pictures))
    else:
        log("\n(matplotlib is not installed: the figures as text)")
        for key in ("reward", "accuracy", "mean_length"):
            log(plots.text_series(hist, key))
        log("base layer-0 expert share per token class:")
        log(plots.text_heatmap(share.tolist(), classes, cols))
    return pictures
