"""Saving and loading PyTorch weights without ever executing a pickle.

`torch.load(..., weights_only=True)` refuses pickled code objects; we also refuse anything
that is not a flat mapping of tensors, so a crafted file cannot smuggle objects in.
"""

from __future__ import annotations

import io
from pathlib import Path

from toolchain.errors import ModelLoadError, missing_file
from toolchain.fsio import write_bytes_atomic


def save_state_dict(model, dest: Path) -> Path:
    import torch

    # Saved through a buffer: torch.save names the archive's root folder after the file it writes,
    # and the temp file's random name made two saves of the same weights differ in bytes.
    buffer = io.BytesIO()
    torch.save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, buffer)
    return write_bytes_atomic(dest, buffer.getvalue())


def state_dict_sha256(path: Path) -> str:
    """Content hash of the tensors in a weights file (names, dtypes, shapes, bytes).

    torch.save writes a random serialization id into every file, so the file's own sha256
    differs between two saves of identical weights; downstream cache keys use this instead.
    """
    return tensors_sha256(load_state_dict(path))


def tensors_sha256(state: dict, h=None) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a state dict's tensors (into `h` if given)."""
    import hashlib

    import torch

    h = h or hashlib.sha256()
    for name, tensor in sorted(state.items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_state_dict(path: Path) -> dict:
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "weights file", "check the path", ModelLoadError)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelLoadError(
            f"{path.name} holds pickled objects that are not plain tensors; refusing to run them",
            "save weights with torch.save(model.state_dict(), path)",
        ) from None
    except Exception as err:
        raise ModelLoadError(f"{path.name} is not a readable PyTorch weights file ({type(err).__name__})",
                             "save weights with torch.save(model.state_dict(), path)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path.name} is not a state dict of tensors", "save model.state_dict(), not the model object")
    return state


def load_into(model, path: Path):
    """Return a copy of `model` holding the weights in `path`; `model` is unchanged."""
    import copy

    fresh = copy.deepcopy(model)
    try:
        fresh.load_state_dict(load_state_dict(path))
    except RuntimeError as err:
        raise ModelLoadError(f"weights in {Path(path).name} do not fit the model ({str(err).splitlines()[0]})",
                             "use weights saved from the same architecture") from None
    return fresh.eval()


def torch_inputs(x, index=slice(None)) -> tuple:
    """A model's positional arguments for samples `index` of `x` (rows on axis 0): a bare array
    is the one input; Feeds give one tensor per input, in the model's input order (token ids and
    attention mask for a transformer)."""
    import numpy as np
    import torch

    from toolchain.data.feeds import Feeds

    if isinstance(x, Feeds):
        return tuple(torch.as_tensor(np.ascontiguousarray(x.arrays[n][index])) for n in x.names)
    return (torch.as_tensor(x[index]),)
