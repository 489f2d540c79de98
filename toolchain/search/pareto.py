"""Pareto plots: accuracy against latency and against bytes, front highlighted."""

from __future__ import annotations

from pathlib import Path

from toolchain.search.budget import Candidate


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower cost and higher accuracy is better); (cost, acc)."""
    front = []
    for i, (c, a) in enumerate(points):
        dominated = any((c2 <= c and a2 >= a) and (c2 < c or a2 > a) for j, (c2, a2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


# Label positions tried around each point, in typographic points, nearest first: close
# candidates (int8 variants a few microseconds and a tenth of a point apart) would otherwise
# print their names on top of each other.
_RADII = (6, 14, 24, 36, 50, 66)
_DIRECTIONS = ((1, 0.4), (1, -1), (-1, 0.4), (-1, -1), (0, 1.2), (0, -1.6))
_OFFSETS = tuple((r * dx, r * dy) for r in _RADII for dx, dy in _DIRECTIONS)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on CI and on devices
    import matplotlib.pyplot as plt

    return plt


def place_labels(ax, pts: list[tuple[float, float, str]]) -> list:
    """Annotate each (x, y, name) at the nearest offset whose text box overlaps no label placed
    before it, inside the axes if possible; a label moved away from its point gets a thin leader
    line. Returns the labels."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken: list = []
    labels = []
    for x, y, name in sorted(pts, key=lambda p: (p[0], -p[1])):
        tries = [(dx, dy, inside) for inside in (True, False) for dx, dy in _OFFSETS]
        for dx, dy, inside in tries:
            label = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7, alpha=0.8,
                                ha="left" if dx >= 0 else "right", va="center",
                                arrowprops={"arrowstyle": "-", "lw": 0.5, "alpha": 0.5} if abs(dx) > 6 else None)
            box = label.get_window_extent(renderer).expanded(1.04, 1.15)
            fits = not inside or (frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1))
            if fits and not any(box.overlaps(other) for other in taken):
                break
            if (dx, dy, inside) != tries[-1]:  # no free place within reach: keep the farthest try
                label.remove()
        taken.append(box)
        labels.append(label)
    return labels


def pareto_figure(pts: list[tuple[float, float, str]], min_accuracy: float, best: str, xlabel: str):
    """The figure for one cost axis: candidates, the front, the chosen one, the budget floor."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], c="tab:gray", label="candidates")
    front = pareto_front([(p[0], p[1]) for p in pts])
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "o-", c="tab:blue", label="Pareto front")
    for cost, acc, name in pts:
        if name == best:
            ax.scatter([cost], [acc], s=160, facecolors="none", edgecolors="tab:red", label="chosen")
    ax.axhline(min_accuracy, ls="--", c="tab:red", lw=1, label="budget floor")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()  # before placing labels: it moves the axes, and with them the boxes
    place_labels(ax, pts)
    return fig


def plot_pareto(candidates: list[Candidate], min_accuracy: float, best: str, out_dir: Path, stem: str) -> list[str]:
    """Write <stem>_latency.png and <stem>_bytes.png; return their file names."""
    plt = _pyplot()
    written = []
    for axis, label in (("latency_ms", "p50 latency, 1 thread (ms)"), ("bytes", "artifact size (bytes)")):
        pts = [(getattr(c, axis), c.accuracy, c.name) for c in candidates if getattr(c, axis) is not None]
        if not pts:
            continue
        fig = pareto_figure(pts, min_accuracy, best, label)
        name = f"{stem}_{'latency' if axis == 'latency_ms' else 'bytes'}.png"
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        written.append(name)
    return written
