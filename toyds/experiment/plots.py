"""Pictures of what toyds measured, or the same figures as text without matplotlib.

matplotlib is an optional extra (`pip install -e ".[plot]"`). Every function here
draws a PNG when it is installed and returns its path; when it is not, it returns
None and the caller prints the text form (`text_series`, `text_heatmap`), so a
workshop without matplotlib sees the same numbers.

    rl_curves          reward, accuracy, format rate and length over RL steps
    expert_load        each expert's share of tokens over training steps
    heatmap            a matrix with labelled rows and columns (expert x token class)
    bars               one value per name (the distillation comparison)
    selection_curves   accuracy against N samples (or tokens), one line per selector, a panel per model
"""

from __future__ import annotations

from pathlib import Path


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt

    return plt


def rl_curves(histories: dict[str, list[dict]], path: Path,
              keys=("reward", "accuracy", "format_rate", "mean_length")) -> Path | None:
    """One panel per key, one line per run, x = RL step."""
    if not have_matplotlib():
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for ax, key in zip(axes, keys):
        for name, hist in histories.items():
            ax.plot([r["step"] for r in hist], [r[key] for r in hist], label=name)
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("RL step")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def expert_load(steps: list[int], loads: list[list[float]], path: Path, title: str = "expert load") -> Path | None:
    """loads[i][e]: expert e's share of tokens at steps[i]."""
    if not have_matplotlib():
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for e in range(len(loads[0])):
        ax.plot(steps, [row[e] for row in loads], label=f"expert {e}")
    ax.set_xlabel("training step")
    ax.set_ylabel("share of tokens")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def heatmap(matrix: list[list[float]], rows: list[str], cols: list[str], path: Path, title: str = "") -> Path | None:
    if not have_matplotlib():
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(cols), 1 + 0.4 * len(rows)))
    im = ax.imshow(matrix, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bars(values: dict[str, float], path: Path, title: str = "", ylabel: str = "") -> Path | None:
    if not have_matplotlib():
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(values), 3.2))
    ax.bar(list(values), list(values.values()))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- text forms


def selection_curves(rows: list[tuple[str, str, dict, dict]], path: Path, log_x: bool = True) -> Path | None:
    """rows: [(row title, x label, {model: {selector: {"x": [...], "accuracy": [...], "std": [...]}}},
    {label: y})], one panel per model in each row, one line per selector, x on a log scale (log_x), and
    a dashed line at each y of the row's references (e.g. R1-Zero's greedy accuracy)."""
    if not have_matplotlib():
        return None
    plt = _pyplot()
    cols = max(len(r[2]) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(4.2 * cols, 3.2 * len(rows)), squeeze=False)
    for i, (title, xlabel, panels, reference) in enumerate(rows):
        for j, (model, sel) in enumerate(panels.items()):
            ax = axes[i][j]
            for name, c in sel.items():
                ax.errorbar(c["x"], c["accuracy"], yerr=c.get("std"), marker="o", ms=3, capsize=2, label=name)
            for label, y in (reference or {}).items():
                ax.axhline(y, ls="--", lw=1, color="grey", label=label)
            if log_x:
                ax.set_xscale("log", base=2)
            ax.set_xlabel(xlabel)
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{model}: {title}", fontsize=9)
        axes[i][0].set_ylabel("held-out accuracy")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def text_series(histories: dict[str, list[dict]], key: str, points: int = 8) -> str:
    """A compact table of `key` at a few evenly spaced steps, one row per run."""
    lines = []
    for name, hist in histories.items():
        idx = sorted({round(i * (len(hist) - 1) / max(points - 1, 1)) for i in range(points)})
        cells = "  ".join(f"{hist[i]['step']:>3}:{hist[i][key]:.2f}" for i in idx)
        lines.append(f"  {name:<12} {key:<12} {cells}")
    return "\n".join(lines)


def text_heatmap(matrix: list[list[float]], rows: list[str], cols: list[str], fmt: str = "{:5.2f}") -> str:
    width = max(5, *(len(c) for c in cols))
    head = " " * 12 + "".join(f"{c:>{width + 1}}" for c in cols)
    body = [f"{r:<12}" + "".join(f"{fmt.format(v):>{width + 1}}" for v in row) for r, row in zip(rows, matrix)]
    return "\n".join([head, *body])
