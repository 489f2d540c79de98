"""Accuracy-budget search: the best artifact whose accuracy drop stays within a budget.

- budget.py    SearchBudget, Candidate, SearchReport (JSON-able), picking the winner
- measure.py   ONNX export for timing, interleaved 1-thread ORT latency, accuracy of an ONNX file
- quant.py     int8 with per-node fp32 fallback, most harmful nodes first
- prune.py     bisection over the structured-pruning amount
- pareto.py    accuracy vs latency / bytes plots (matplotlib, Agg)
"""

from toolchain.search.budget import Candidate, SearchBudget, SearchReport
from toolchain.search.prune import search_drop_blocks, search_prune_amount
from toolchain.search.quant import search_quantization

__all__ = ["Candidate", "SearchBudget", "SearchReport", "search_drop_blocks", "search_prune_amount", "search_quantization"]
