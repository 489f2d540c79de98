"""Structured (channel) pruning, split the way Torch-Pruning splits it:

- graph.py    analysis: trace coupled channels, find the classifier, diagnose untraceable layers
- scoring.py  importance criteria (which channels matter)
- policy.py   how many channels each coupled group loses at one step (global or per layer)
- plan.py     the surgery record as JSON data, and replaying it on a fresh model
- measure.py  params / MACs of a torch model

The stage that strings these together is toolchain/stages/prune_structured.py.
"""

from toolchain.pruning.plan import PrunePlan, replay_plan

__all__ = ["PrunePlan", "replay_plan"]
