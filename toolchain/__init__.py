"""edgeopt: PyTorch models to small, fast, verified edge artifacts.

Importing this package must stay cheap: torch and onnxruntime are imported inside the
functions that need them, so that `edgeopt --help` is instant.
"""

__version__ = "0.1.0"
