"""Checkpoints that hold everything needed to use a model, saved safely.

A toyds checkpoint is one file with the model's weights, its GPTConfig (as a
plain dict), the tokenizer's vocabulary and a checksum of the weights, plus any
metrics the caller adds:

    {"format": "toyds-checkpoint-2", "config": {...}, "vocab": [...],
     "model": state_dict, "sha256": "9f2c...", "meta": {...}}

Saving is atomic (train/files.py: a temp file beside the destination, renamed over
it), so a crash, a Ctrl-C or a full disk mid-save leaves the previous checkpoint
whole and no temp file behind; a full disk is named in one sentence. A save replaces
nothing, or a regular file that is itself a toyds checkpoint: never a directory, a
symbolic link, a FIFO or a device (as root, `--out /dev/null` once replaced the
machine's /dev/null), and an unrelated file only with force=True. (The path is
checked when the save starts: a file swapped in during the write is not noticed.)

An int8 model (efficient/quantize.py) saves the same way, with "quantization":
"int8" in the file; loading rebuilds the int8 layers before the weights go in, and
checks every tensor's dtype as well as its shape (an int8 weight is never cast).

Loading uses torch.load(weights_only=True), which unpickles only tensors and
plain containers: a checkpoint from a stranger cannot run code on your machine.
Every malformed file (not a checkpoint, truncated, a missing or mistyped entry, a
config the model cannot be built from, weights whose bytes changed since saving)
raises one ValueError naming the file and what is wrong. A checkpoint from before
checksums ("toyds-checkpoint-1") still loads, with a warning that its weights were
not verified: refusing would strand every model trained before the change.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path

import torch

from toyds.core.model import GPT, GPTConfig
from toyds.core.tokenizer import VOCAB, Tokenizer
from toyds.efficient.quantize import SCHEME as QUANT_SCHEME
from toyds.efficient.quantize import is_quantized, quantize_model
from toyds.experiment.flags import check_device
from toyds.train.files import atomic_write, describe

FORMAT = "toyds-checkpoint-2"
OLD_FORMATS = ("toyds-checkpoint-1",)  # no checksum: loaded, with a warning


# --------------------------------------------------------------- checksum


def weights_checksum(weights: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, names in sorted order."""
    h = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # the raw bytes, whatever the dtype
    return h.hexdigest()


# ----------------------------------------------------- what may be replaced


def is_checkpoint(path: Path) -> bool:
    """True if the regular file at `path` is a toyds checkpoint (read safely, nothing executed)."""
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; this reads only its end
        return False
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # tensors stay on disk
    except Exception:  # anything unreadable is not a checkpoint
        return False
    return isinstance(state, dict) and state.get("format") in (FORMAT, *OLD_FORMATS)


def check_writable(path, force: bool = False) -> Path:
    """Raise a ValueError unless a checkpoint may be saved at `path`; call it before the work.

    Nothing there, or a toyds checkpoint: fine. An unrelated regular file: only with
    force=True. A directory, symbolic link, FIFO, device or socket: never.
    """
    path = Path(path)
    what = describe(path)
    if what is not None and what != "a regular file":
        raise ValueError(f"refusing to save a checkpoint over {path}: it is {what}; a checkpoint replaces "
                         f"only a regular file (force cannot change this), so give a new file path")
    if what is not None and not force and not is_checkpoint(path):
        raise ValueError(f"refusing to overwrite {path}: it is a regular file but not a toyds checkpoint; "
                         f"give another path, or replace it with --force (force=True)")
    folder = path.absolute().parent
    while describe(folder, follow_symlinks=True) is None:  # the folders save_checkpoint would create
        folder = folder.parent
    if (what := describe(folder, follow_symlinks=True)) != "a directory":
        raise ValueError(f"cannot save a checkpoint at {path}: {folder} is {what}, not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot save a checkpoint at {path}: no permission to write in {folder}")
    return path


# ------------------------------------------------------------------- save


def save_checkpoint(path, model: GPT, meta: dict | None = None, force: bool = False) -> Path:
    """Write model + config + vocabulary + checksum (+ meta) to `path`, atomically.

    Refuses (ValueError) to replace anything but a toyds checkpoint; force=True lets it
    replace an unrelated regular file too, never a directory, link, FIFO or device.
    """
    path = check_writable(path, force)
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:  # a NaN model is not worth keeping, and must not replace a good one
        raise ValueError(f"refusing to save {path}: the weights {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} "
                         f"hold NaN or infinite values (training diverged); the file was left as it was")
    state = {
        "format": FORMAT,
        "config": model.cfg.to_dict(),
        "vocab": list(VOCAB),
        "model": weights,
        "sha256": weights_checksum(weights),
        "meta": meta or {},
    }
    if is_quantized(model):
        state["quantization"] = QUANT_SCHEME
    needs = sum(t.numel() * t.element_size() for t in weights.values())  # the file is the tensors and a little
    return atomic_write(path, lambda f: torch.save(state, f), needs)


# ------------------------------------------------------------------- load

# entry -> the type it must have; "sha256" only from FORMAT on, "meta" may be absent
ENTRIES = {"config": dict, "vocab": list, "model": dict, "sha256": str, "meta": dict}


def load_checkpoint(path, device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer, dict]:
    """Load a checkpoint written by save_checkpoint; returns (model, tokenizer, meta).

    A missing file raises FileNotFoundError; an unusable device or any malformed
    file, a ValueError naming the device or the file and what is wrong.
    """
    path = Path(path)
    device = check_device(device, flag="device")  # before the file: "no CUDA" must not read as "corrupt"
    what = describe(path, follow_symlinks=True)
    if what is None:
        raise FileNotFoundError(f"no checkpoint at {path}")
    if what != "a regular file":
        raise ValueError(f"{path} is {what}, not a checkpoint file")

    def bad(why: str) -> ValueError:
        return ValueError(f"{path} is not a readable toyds checkpoint: {why}")

    # 1. a zip archive that torch.load reads with weights_only=True
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(24)
        if head.startswith(b"PK\x03\x04"):
            raise bad("it begins like a zip archive but does not end like one (truncated?)")
        raise bad(f"torch.save writes a zip archive and this file is not one (it begins {head!r})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # whatever a damaged or foreign archive makes the unpickler raise
        raise bad(f"torch.load failed ({type(e).__name__}: {e})") from e

    # 2. the entries a checkpoint has, with the types they must have
    if not isinstance(state, dict):
        raise bad(f"it holds a {type(state).__name__}, not a dict")
    fmt = state.get("format")
    if fmt not in (FORMAT, *OLD_FORMATS):
        raise bad(f"its format is {fmt!r}, expected {FORMAT!r}")
    for key, kind in ENTRIES.items():
        if key not in state and (key == "meta" or (key == "sha256" and fmt in OLD_FORMATS)):
            continue
        if key not in state:
            raise bad(f"it has no {key!r} entry")
        if not isinstance(state[key], kind):
            raise bad(f"its {key!r} entry is a {type(state[key]).__name__}, expected a {kind.__name__}")
    weights = state["model"]
    wrong = [k for k, v in weights.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if wrong:
        raise bad(f"its 'model' entry should map names to tensors, but {wrong[0]!r} does not")

    # 3. the bytes of the weights are the bytes that were saved
    if fmt in OLD_FORMATS:
        warnings.warn(f"{path} was saved by an older toyds without a checksum: its weights cannot be verified; "
                      f"save it again to add one", stacklevel=2)
    elif (now := weights_checksum(weights)) != state["sha256"]:
        raise ValueError(f"{path} is corrupt: its weights' sha256 is {now[:12]}..., but {state['sha256'][:12]}... "
                         f"was saved with them (bytes changed since); restore a copy or retrain")

    # 4. this tokenizer's vocabulary, and a config the weights fit
    vocab = state["vocab"]
    if vocab != list(VOCAB):
        raise ValueError(
            f"{path} was saved with a different vocabulary ({len(vocab)} tokens) than this "
            f"toyds ({len(VOCAB)} tokens); it cannot be used with this tokenizer"
        )
    config = state["config"]
    quant = state.get("quantization")
    if quant not in (None, QUANT_SCHEME):
        raise bad(f"its quantization is {quant!r}; this toyds loads float32 models (no entry) or {QUANT_SCHEME!r}")

    def build(cfg):  # the model the weights go into: float32, or with efficient/quantize.py's int8 layers
        return quantize_model(GPT(cfg)) if quant else GPT(cfg)

    try:
        cfg = GPTConfig.from_dict(config)  # configs of earlier toyds layouts too
        with torch.device("meta"):  # shapes only, no memory: a config cannot make us allocate more than the file
            shapes = {k: (v.shape, v.dtype) for k, v in build(cfg).state_dict().items()}
    except Exception as e:  # a field of the wrong type can fail anywhere in the constructors
        raise bad(f"its config does not build a model ({type(e).__name__}: {e})") from e
    if cfg.vocab_size != len(VOCAB):
        raise bad(f"its config says vocab_size={cfg.vocab_size}, but the vocabulary has {len(VOCAB)} tokens")
    if shapes != {k: (v.shape, v.dtype) for k, v in weights.items()}:
        missing, extra = sorted(shapes.keys() - weights.keys()), sorted(weights.keys() - shapes.keys())
        shaped = [k for k in shapes.keys() & weights.keys() if shapes[k] != (weights[k].shape, weights[k].dtype)]
        raise ValueError(f"{path}: the weights do not match the saved config (missing {missing[:3]}, "
                         f"unexpected {extra[:3]}, mis-shaped or mis-typed {sorted(shaped)[:3]})")
    model = build(cfg)
    model.load_state_dict(weights, strict=True)
    return model.to(device), Tokenizer(), dict(state.get("meta", {}))
