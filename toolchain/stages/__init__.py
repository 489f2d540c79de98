"""Pipeline stages. Each is a frozen config plus a function from artifact(s) to a new artifact.

Stage modules import torch/onnxruntime inside their functions, so that loading a config does
not pay for the heavy libraries.
"""
