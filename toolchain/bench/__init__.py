"""Measurement: latency percentiles, peak memory, accuracy of ONNX Runtime artifacts."""
