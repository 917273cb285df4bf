"""Looking inside a mixture of experts: who got which tokens, and how evenly.

An MoE layer (toyds/moe/layer.py) records, after every forward, the experts it chose
for each real (non-padding) token (`moe.indices`, (n, K)) and how many assignments
each expert ran (`moe.load`, (E,)). This module turns those into the numbers the
MoE example, the pipeline and `toyds experts` print (and LoadCurve records the
load over training, for the picture):

    max_load_ratio   max_i load_i / mean_i load_i        1.0 is perfect balance
    dead_experts     experts with load_i < 0.1 * mean load (they barely learn)
    load_entropy     -sum_i p_i log p_i / log E,  p_i = load_i / sum load    (1.0 = uniform)

and specialisation: for each class of token (prompt digits, operators, tags, the
digits of the worked trace, the digits of the answer, ...) the share of its
assignments that went to each expert. DeepSeekMoE (Dai et al. 2024) argues that
fine-grained experts specialise; at toy scale you can watch it happen.

Shapes: B texts, T tokens, n real tokens among the B*T positions, K top-k, E experts.
"""

from __future__ import annotations

import math

import torch

from toyds.core.layers import evaluating
from toyds.core.sampling import left_pad
from toyds.core.tokenizer import ANSWER, END_ANSWER, END_THINK, SPECIALS, THINK, Tokenizer

TOKEN_CLASSES = ("prompt digit", "operator", "think digit", "think symbol", "answer digit", "tag", "other")


def load_stats(load: torch.Tensor) -> dict:
    """Balance measures of one layer's per-expert load (E,)."""
    load = load.float()
    mean = load.mean()
    p = load / load.sum().clamp(min=1)
    # H = -sum p log p / log E
    entropy = -(p[p > 0] * p[p > 0].log()).sum() / math.log(len(load)) if len(load) > 1 else torch.tensor(1.0)
    return {
        "max_load_ratio": float(load.max() / mean) if mean > 0 else float("nan"),
        "dead_experts": int((load < 0.1 * mean).sum()),
        "load_entropy": float(entropy),
    }


def token_classes(text: str, tok: Tokenizer | None = None) -> list[str]:
    """A class for every token of `<bos>347+589=<think>...</think><answer>936</answer><eos>`."""
    tok = tok or Tokenizer()
    out, where = [], "prompt"  # prompt -> (after '=') completion -> think / answer
    for t in tok.encode(text):
        s = tok.vocab[t]
        if s in SPECIALS:
            out.append("tag")
            where = {THINK: "think", ANSWER: "answer", END_THINK: "completion", END_ANSWER: "completion"}.get(s, where)
            continue
        if s.isdigit():
            cls = {"prompt": "prompt digit", "answer": "answer digit"}.get(where, "think digit")
        elif where == "prompt":
            cls = "operator" if s in "+-x=" else "other"
        else:
            cls = "think symbol"
        out.append(cls)
        if where == "prompt" and s == "=":
            where = "completion"
    return out


@torch.no_grad()
def routed_tokens(model, texts: list[str]) -> tuple[list[list[str]], list[torch.Tensor]]:
    """Run texts through the model; return each text's token classes and, per MoE layer,
    the experts chosen at every real token position: a list over layers of (n_tokens, K)."""
    tok = Tokenizer()
    device = next(model.parameters()).device
    ids, mask = left_pad([tok.encode(t) for t in texts], tok.pad_id, device)  # (B, T)
    with evaluating(model):
        model(ids, pad_mask=mask)
    # the MoE routed only the real tokens, row by row: (n_tokens, K) per layer
    per_layer = [m.indices.cpu() for m in model.moe_layers()]
    return [token_classes(t, tok) for t in texts], per_layer


def specialisation(model, texts: list[str], layer: int = -1) -> tuple[list[str], torch.Tensor]:
    """(classes, share (C, E)): share[c, e] = fraction of class c's assignments that went to expert e."""
    classes, per_layer = routed_tokens(model, texts)
    if not per_layer:
        raise ValueError("this model has no MoE layers (it was built with ffn='dense')")
    chosen = per_layer[layer]  # (n_tokens, K)
    flat_classes = [c for row in classes for c in row]
    present = [c for c in TOKEN_CLASSES if c in flat_classes]
    E = model.moe_layers()[layer].cfg.n_experts
    counts = torch.zeros(len(present), E)
    for i, c in enumerate(flat_classes):
        counts[present.index(c)] += torch.bincount(chosen[i], minlength=E).float()
    return present, counts / counts.sum(1, keepdim=True)


class LoadCurve:
    """A step_callback for any toyds trainer (supervised, GRPO, distillation): every
    `every` steps, each expert's share of one MoE layer's training tokens in that
    optimiser step (all ranks under data parallelism). points: [(step, [share of e0, e1, ...]), ...]."""

    def __init__(self, layer: int = 0, every: int = 10):
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"LoadCurve(every={every!r}): record every n >= 1 steps")
        self.layer, self.every = layer, every
        self.points: list[tuple[int, list[float]]] = []

    def __call__(self, step: int, model) -> None:
        layers = model.moe_layers()
        if layers and not -len(layers) <= self.layer < len(layers):
            raise ValueError(f"LoadCurve(layer={self.layer}): the model has {len(layers)} MoE layers, "
                             f"so layer must be in {-len(layers)}..{len(layers) - 1}")
        if step % self.every == 0 and layers:
            load = layers[self.layer].step_load  # (E,) this step's training tokens, not an evaluation's
            self.points.append((step, (load / load.sum().clamp(min=1)).tolist()))


@torch.no_grad()
def validation_load(model, texts: list[str]) -> list[dict]:
    """load_stats of every MoE layer over the real tokens of `texts`."""
    _, per_layer = routed_tokens(model, texts)
    out = []
    for chosen, moe in zip(per_layer, model.moe_layers()):
        out.append(load_stats(torch.bincount(chosen.flatten(), minlength=moe.cfg.n_experts)))
    return out
