"""Checkpoints that hold everything needed to use a model, saved safely.

A toyds checkpoint is one file with the model's weights, its GPTConfig (as a
plain dict) and the tokenizer's vocabulary, plus any metrics the caller adds:

    {"format": "toyds-checkpoint-1", "config": {...}, "vocab": [...],
     "model": state_dict, "meta": {...}}

Saving is atomic: the file is written beside its destination under a temporary
name, flushed to disk, then renamed over it (os.replace is atomic on POSIX and
Windows), so a crash mid-save leaves the previous checkpoint whole.

Loading uses torch.load(weights_only=True), which unpickles only tensors and
plain containers: a checkpoint from a stranger cannot run code on your machine.
A file that is not a toyds checkpoint, was truncated, or was made for another
vocabulary raises a ValueError that says which.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import torch

from toyds.model import GPT, GPTConfig
from toyds.tokenizer import VOCAB, Tokenizer

FORMAT = "toyds-checkpoint-1"


def save_checkpoint(path, model: GPT, meta: dict | None = None) -> Path:
    """Write model + config + vocabulary (+ meta) to `path`, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "config": model.cfg.to_dict(),
        "vocab": list(VOCAB),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # the atomic step: readers see the old file or the new one
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path, device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer, dict]:
    """Load a checkpoint written by save_checkpoint; returns (model, tokenizer, meta)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not a readable toyds checkpoint (corrupt or truncated?): {e}") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a toyds checkpoint: format is {got!r}, expected {FORMAT!r}")
    if list(state["vocab"]) != list(VOCAB):
        raise ValueError(
            f"{path} was saved with a different vocabulary ({len(state['vocab'])} tokens) than this "
            f"toyds ({len(VOCAB)} tokens); it cannot be used with this tokenizer"
        )
    cfg = GPTConfig(**state["config"])
    model = GPT(cfg).to(device)
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
        raise ValueError(f"{path}: the weights do not match the saved config: {e}") from e
    return model, Tokenizer(), dict(state.get("meta", {}))
