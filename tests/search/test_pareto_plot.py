"""Pareto plot labels: close candidates get names that do not overlap."""

from __future__ import annotations

import itertools

import pytest

from toolchain.search.budget import Candidate
from toolchain.search.pareto import pareto_figure, plot_pareto

# Eight int8 variants within 3 microseconds and 0.3 points of each other, as a fallback search makes.
CLOSE = [(0.1000 + 0.0004 * i, 0.950 + 0.0004 * (i % 3), f"int8-fallback-{i}") for i in range(8)]
CLOSE.append((0.2, 0.985, "fp32"))


def _label_boxes(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    return {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}


@pytest.mark.parametrize("points", [CLOSE, [(p[1], p[0], p[2]) for p in CLOSE]], ids=["close", "stacked"])
def test_labels_of_close_points_do_not_overlap(points):
    import matplotlib.pyplot as plt

    fig = pareto_figure(points, 0.94, "int8-fallback-0", "p50 latency (ms)")
    try:
        boxes = _label_boxes(fig)
    finally:
        plt.close(fig)
    assert sorted(boxes) == sorted(p[2] for p in points)  # every candidate named once
    overlapping = [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes.items(), 2) if box_a.overlaps(box_b)]
    assert overlapping == []


def test_plot_pareto_writes_both_plots(tmp_path):
    cands = [Candidate(name, f"{name}.onnx", acc, int(cost * 1e6), latency_ms=cost) for cost, acc, name in CLOSE]
    assert plot_pareto(cands, 0.94, "fp32", tmp_path, "pareto") == ["pareto_latency.png", "pareto_bytes.png"]
    assert (tmp_path / "pareto_latency.png").read_bytes()[:4] == b"\x89PNG"
