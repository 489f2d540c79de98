"""Depth pruning: shape-preserving blocks found by tracing, ranked by measured loss, dropped and replayed."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from toolchain.errors import BadInput
from toolchain.pruning import PrunePlan, replay_plan
from toolchain.pruning.depth import droppable_blocks, rank_blocks, replace_with_identity
from toolchain.pruning.graph import example_input
from toolchain.stages.prune import PruneConfig, prune
from toolchain.stages.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Block(nn.Module):
    """x + f(x): the skip lives inside, as in torchvision's residual blocks."""

    def __init__(self, c: int):
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                    nn.Conv2d(c, c, 1))

    def forward(self, x):
        return x + self.branch(x)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU())
        self.res1, self.res2 = _Block(16), _Block(16)
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.res3 = _Block(32)
        self.shared = _Block(32)  # called twice: dropping it in one place is impossible
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.res2(self.res1(self.stem(x)))
        x = self.shared(self.shared(self.res3(self.down(x))))
        return self.head(x.mean((2, 3)))


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].sum((1, 2)) > 0).astype(np.int64) + 2 * (x[:, 0, 4:].sum((1, 2)) > 0)
    return SimpleNamespace(x_train=x, y_train=y, x_test=x[:64], y_test=y[:64], input_shape=(1, 8, 8))


def test_droppable_blocks_are_the_outermost_shape_preserving_ones():
    model = _Net()
    ex = example_input((1, 8, 8))
    # not stem/down (shape changes), not res*.branch (inside a droppable block), not shared (called twice)
    assert droppable_blocks(model, ex) == ["res1", "res2", "res3"]
    assert droppable_blocks(model, ex, ignored=["res2.branch.0"]) == ["res1", "res3"]


def test_rank_measures_each_drop_and_leaves_the_model_unchanged():
    torch.manual_seed(0)
    model, data = _Net(), _data()
    with torch.no_grad():  # res2's branch outputs zero: dropping it changes nothing
        model.res2.branch[3].weight.zero_()
        model.res2.branch[3].bias.zero_()
    before = copy.deepcopy(model.state_dict())
    ranked = rank_blocks(model, ["res1", "res2", "res3"], data.x_train, data.y_train)
    deltas = dict(ranked)
    assert deltas["res2"] == 0.0 and deltas["res1"] != 0 and deltas["res3"] != 0
    assert [d for _, d in ranked] == sorted(deltas.values())
    # the increase is the loss on the sample (all 256 here) with that block alone as the identity
    loss = nn.CrossEntropyLoss()
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    with torch.no_grad():
        base = float(loss(model.eval()(x), y))
        dropped = copy.deepcopy(model)
        dropped.res1 = nn.Identity()
        assert deltas["res1"] == pytest.approx(float(loss(dropped(x), y)) - base, abs=1e-6)
    assert isinstance(model.res2, _Block)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_structured_prune_drops_blocks_and_the_plan_replays_them(tmp_path):
    torch.manual_seed(0)
    model, data = _Net(), _data()
    cfg = PruneConfig(kind="structured", amount=0.5, drop_blocks=1, finetune_epochs=1)
    pruned, m = prune(model, data, cfg, TrainConfig(epochs=1, batch_size=64))
    increase = m["block_loss_increase"]
    assert set(increase) == {"res1", "res2", "res3"}
    least = min(increase, key=increase.get)
    assert m["blocks_dropped"] == [least] and isinstance(getattr(pruned, least), nn.Identity)
    # channel pruning still ran after the drop: every kept block is at half width
    for name, width in (("res1", 16), ("res2", 16), ("res3", 32)):
        if name != least:
            assert [getattr(pruned, name).branch[i].out_channels for i in (0, 3)] == [width // 2] * 2
    assert m["params_after"] < m["params_before"] // 2
    assert all(isinstance(getattr(model, n), _Block) for n in ("res1", "res2", "res3"))  # input not mutated

    plan = PrunePlan.from_dict(m["plan"])
    assert plan.dropped_blocks == (least,) and m["plan"]["schema_version"] == 2
    path = plan.save(tmp_path / "plan.json")
    fresh = replay_plan(_Net(), PrunePlan.load(path))
    fresh.load_state_dict(pruned.state_dict())
    x = torch.as_tensor(data.x_test[:8])
    assert torch.equal(fresh.eval()(x), pruned.eval()(x))


def test_version_1_plans_without_drops_still_load():
    plan = PrunePlan.from_dict({"schema_version": 1, "input_shape": [1, 8, 8], "history": [], "meta": {}})
    assert plan.dropped_blocks == ()


def test_asking_for_more_blocks_than_the_model_has_names_the_limit():
    cfg = PruneConfig(kind="structured", amount=0.5, drop_blocks=4, finetune_epochs=0)
    with pytest.raises(BadInput, match=r"drop_blocks = 4, but this model has 3 droppable blocks \(res1, res2, res3\)"):
        prune(_Net(), _data(), cfg, TrainConfig(epochs=1))


def test_replaying_a_drop_on_another_model_is_bad_input():
    with pytest.raises(BadInput, match="drops block 'features.3'"):
        replace_with_identity(_Net(), ["features.3"])


def test_drop_blocks_search_bisects_to_the_most_blocks_within_the_budget(tmp_path):
    """3 droppable blocks; a 100-point budget accepts all of them, a zero budget none."""
    from toolchain.search import SearchBudget, search_drop_blocks

    torch.manual_seed(0)
    data = _data()
    cfg = PruneConfig(kind="structured", amount=0.5, finetune_epochs=0)
    loose = search_drop_blocks(_Net(), data, SearchBudget(max_drop=0.99), tmp_path / "loose", prune_cfg=cfg,
                               train_cfg=TrainConfig(epochs=1), measure_latency=False)
    assert [t["drop_blocks"] for t in loose.tried] == [3] and loose.met  # all fit: nothing to bisect
    best = next(c for c in loose.candidates if c.name == loose.best)
    assert best.detail["drop_blocks"] == 3 and len(best.detail["blocks_dropped"]) == 3
    assert (tmp_path / "loose" / "best" / "plan.json").is_file()
    plan = PrunePlan.load(tmp_path / "loose" / "best" / "plan.json")
    assert len(plan.dropped_blocks) == 3


def test_drop_blocks_search_bisects_down_to_what_the_budget_allows(tmp_path, monkeypatch):
    """Accuracy scripted per try (0.90 - 0.02 per dropped block), budget 3 points: 1 block fits, 2 do not."""
    from toolchain.search import SearchBudget, prune_tasks, search_drop_blocks
    from toolchain.search import prune as search_prune

    def scripted(path, x, y):  # a candidate is built beside its plan; the baseline is not
        plan = Path(path).parent / "plan.json"
        return 0.90 - (0.02 * len(PrunePlan.load(plan).dropped_blocks) if plan.is_file() else 0)

    monkeypatch.setattr(search_prune, "onnx_accuracy", scripted)
    monkeypatch.setattr(prune_tasks, "onnx_accuracy", scripted)
    cfg = PruneConfig(kind="structured", amount=0.5, finetune_epochs=0)
    report = search_drop_blocks(_Net(), _data(), SearchBudget(max_drop=0.03), tmp_path, prune_cfg=cfg,
                                train_cfg=TrainConfig(epochs=1), measure_latency=False)
    assert [t["drop_blocks"] for t in report.tried] == [3, 1, 2]
    assert [r["drop_blocks"] for r in report.reverted] == [3, 2] and report.met
    best = next(c for c in report.candidates if c.name == report.best)
    assert best.detail["drop_blocks"] == 1 and best.accuracy == pytest.approx(0.88)


def test_drop_blocks_search_on_a_model_without_blocks_is_bad_input(tmp_path):
    from toolchain.search import SearchBudget, search_drop_blocks

    flat = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 4))
    with pytest.raises(BadInput, match="no droppable block"):
        search_drop_blocks(flat, _data(), SearchBudget(max_drop=0.01), tmp_path, prune_cfg=PruneConfig(kind="structured"))
