"""`toyds export` and `toyds import`: a toyds checkpoint as a transformers folder, and back.

    toyds export runs/pipeline/stages/student.pt --out runs/student-hf     # config.json, model.safetensors, ...
    python -c "from transformers import AutoModelForCausalLM as M; M.from_pretrained('runs/student-hf')"
    toyds import runs/student-hf --out runs/student-again.pt               # bit for bit the checkpoint exported

The folder is what `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`
load offline: config.json (the target class of export/mapping.py, and toyds's own
GPTConfig under "toyds_config", so the round trip is exact), model.safetensors,
generation_config.json (bos, eos, pad; <pad> and <bos> suppressed while generating, as
toyds's sampler bans them, so greedy decoding is token for token toyds's) and a
tokenizer.json (export/tokenizer.py). A config with no exact target is refused before
anything is written, and --out must be a new or empty folder, or an earlier export.

transformers, safetensors and tokenizers are the `hf` extra (pip install -e ".[hf]");
they are imported here, when an export or an import runs, so toyds runs without them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from toyds.core.model import GPT, GPTConfig
from toyds.core.tokenizer import BOS, PAD, VOCAB
from toyds.efficient.quantize import is_quantized
from toyds.export.mapping import TARGETS, Unexportable, from_hf, hf_config, target, to_hf
from toyds.export.tokenizer import hf_tokenizer
from toyds.train.checkpoint import check_writable, load_checkpoint, save_checkpoint

MARK = "toyds_config"  # the key of toyds's own config inside config.json


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise ValueError('exporting needs the `hf` extra: pip install -e ".[hf]" (transformers, safetensors, '
                         "tokenizers)") from e
    return transformers


def check_folder(out: Path) -> Path:
    """--out may be new, empty, or an earlier toyds export (replaced file by file); never anything else."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the exported model")
    if out.is_dir() and any(out.iterdir()):
        config = out / "config.json"
        try:
            ours = MARK in json.loads(config.read_text())
        except (OSError, ValueError):
            ours = False
        if not ours:
            raise ValueError(f"refusing to write into {out}: it holds files that are not a toyds export; give a new "
                             f"or empty folder")
    return out


def hf_model(model: GPT):
    """The transformers model that computes what `model` computes (float32, eval mode)."""
    tf = _transformers()
    kind = target(model.cfg)
    config_cls = {"llama": tf.LlamaConfig, "deepseek_v3": tf.DeepseekV3Config, "glm4_moe": tf.Glm4MoeConfig}[kind]
    config = config_cls(**hf_config(model.cfg), architectures=[TARGETS[kind]])
    setattr(config, MARK, model.cfg.to_dict())
    hf = getattr(tf, TARGETS[kind])(config).to(torch.float32)
    missing, unexpected = hf.load_state_dict(to_hf(model.state_dict(), model.cfg), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)  # lm_head is tied
    hf.generation_config = tf.GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
        suppress_tokens=[VOCAB.index(PAD), VOCAB.index(BOS)], do_sample=False)
    return hf.eval()


def export_model(checkpoint, out) -> Path:
    """Write the transformers folder of a toyds checkpoint; refuses a model with no exact target first."""
    model, _, _ = load_checkpoint(checkpoint)
    if is_quantized(model):
        raise Unexportable(f"{checkpoint} holds int8 weights (toyds quantize); export the float32 checkpoint instead")
    target(model.cfg)  # an unexportable config is named before anything is written
    out = check_folder(out)
    hf = hf_model(model)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out)
    hf_tokenizer().save_pretrained(out)
    return out


def config_from_hf(config) -> GPTConfig:
    """The GPTConfig of a transformers config: toyds's own if the folder came from toyds, else derived."""
    stored = getattr(config, MARK, None)
    if stored:
        return GPTConfig.from_dict(stored)
    raise ValueError(f"{config.architectures} folder without {MARK!r} in config.json: toyds imports the folders "
                     f"`toyds export` wrote (or trained on from them, which keeps the key)")


def import_model(folder, out=None, force: bool = False) -> GPT:
    """A toyds GPT from an exported (and perhaps retrained) transformers folder; saved to `out` if given."""
    tf = _transformers()
    if out is not None:
        check_writable(out, force)
    hf = tf.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    cfg = config_from_hf(hf.config)
    model = GPT(cfg)
    model.load_state_dict(from_hf(hf.state_dict(), cfg), strict=True)
    if out is not None:
        save_checkpoint(out, model, meta={"imported_from": str(folder)}, force=force)
    return model.eval()


__all__ = ["Unexportable", "check_folder", "export_model", "hf_model", "import_model"]
