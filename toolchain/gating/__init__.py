"""`edgeopt gate` and `edgeopt baseline`: noise-aware budgets with CI-native reports.

Importing this package is cheap: onnxruntime and numpy-heavy work load inside functions.
The decision rule is documented in docs/gating.md.
"""
