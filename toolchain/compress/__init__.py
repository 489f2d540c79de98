"""`edgeopt compress`: bring your own model (ONNX, PyTorch factory + state dict, or .pt2) and data,
and get the same per-target artifacts, gates and report as `edgeopt run` (docs/compress.md).

  model_input  load + normalize an ONNX file into one self-contained, verified ONNX file
  torch_input  PyTorch factory + weights / torch.export .pt2 -> ONNX (then model_input)
  data_input   .npz / .npy / .csv / module:function / random -> checked calibration + evaluation split
  evaluators   accuracy, regression error, fp32 agreement + SQNR, or a user's evaluator
  run          orchestration: preflight everything, then build_target per target, then the report

Every check runs before the output directory is created, so bad input leaves nothing behind.
"""
