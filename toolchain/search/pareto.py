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


def plot_pareto(candidates: list[Candidate], min_accuracy: float, best: str, out_dir: Path, stem: str) -> list[str]:
    """Write <stem>_latency.png and <stem>_bytes.png; return their file names."""
    import matplotlib

    matplotlib.use("Agg")  # no display on CI and on devices
    import matplotlib.pyplot as plt

    written = []
    for axis, label in (("latency_ms", "p50 latency, 1 thread (ms)"), ("bytes", "artifact size (bytes)")):
        pts = [(getattr(c, axis), c.accuracy, c.name) for c in candidates if getattr(c, axis) is not None]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], c="tab:gray", label="candidates")
        front = pareto_front([(p[0], p[1]) for p in pts])
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "o-", c="tab:blue", label="Pareto front")
        for cost, acc, name in pts:
            ax.annotate(name, (cost, acc), fontsize=7, alpha=0.8)
            if name == best:
                ax.scatter([cost], [acc], s=160, facecolors="none", edgecolors="tab:red", label="chosen")
        ax.axhline(min_accuracy, ls="--", c="tab:red", lw=1, label="budget floor")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"{stem}_{'latency' if axis == 'latency_ms' else 'bytes'}.png"
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        written.append(name)
    return written
