"""`toyds export` and `toyds import`: a checkpoint to a transformers folder and back (export/hf.py).

    toyds export runs/pipeline/stages/student.pt --out runs/student-hf
    toyds import runs/student-hf --out runs/student.pt

Both check what they are given before any work: a model with no exact transformers
target is named with the setting that stops it (export/mapping.py), --out must be a new
or empty folder (or an earlier export) for export, and a free path or a toyds checkpoint
for import (--force: any regular file). They need the `hf` extra.
"""

from __future__ import annotations

import torch

from toyds.export.hf import export_model, import_model
from toyds.export.mapping import TARGETS, target
from toyds.train.checkpoint import load_checkpoint


def cmd_export(args) -> int:
    torch.set_num_threads(args.threads)
    out = export_model(args.model, args.out)
    model, _, _ = load_checkpoint(args.model)
    print(f"{args.model} -> {out} ({TARGETS[target(model.cfg)]}: config.json, model.safetensors, "
          f"generation_config.json, tokenizer.json)")
    print(f"  from transformers import AutoModelForCausalLM, AutoTokenizer; "
          f"AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


def cmd_import(args) -> int:
    torch.set_num_threads(args.threads)
    model = import_model(args.folder, args.out, force=args.force)
    print(f"{args.folder} -> {args.out} ({model.params_total():,} parameters)")
    return 0
