"""Load balancing for a mixture of experts: every rule in one place.

A router left alone piles tokens onto a few experts; the rest barely learn
(moe/routing.py measures it). Balancing rules fight that, and DeepSeek-V3 uses
two of them together (report, section 2.1.2). A rule is an object with up to three
parts, and `MoEConfig.balance` names the rules a layer uses, joined by "+":

    none      nothing: watch the router collapse
    aux_loss  Switch/GShard: L = alpha E sum_i f_i P_i over the whole batch, with
              f_i the share of the N*K token-expert assignments expert i took and
              P_i the mean of its (normalised) affinity over tokens
    seq_aux   V3's sequence-wise auxiliary loss (eqs. 17-20): the same, per sequence,
              averaged over sequences, with a tiny alpha (V3: 0.0001), so no single
              sequence is routed lopsidedly
    bias      V3's auxiliary-loss-free rule: a bias b_i is added to the scores for
              *choosing* experts (never for weighting them), and after each
              optimiser step b_i += gamma * sign(mean_load - load_i)
    "bias+seq_aux" is V3's recipe as it trains.

A rule's hyperparameters are the fields of its class (AuxLoss.alpha, BiasUpdate.gamma),
set through MoEConfig(balance_params={"aux_loss": {"alpha": 0.1}}). Both `MoE`
(moe/layer.py) and the expert-parallel layer (parallel/expert_parallel.py) call this
code; the expert-parallel layer hands it global counts (summed over ranks), and each
rank's loss is its share, so the shares sum to the loss of the whole batch. To add a
rule, write a dataclass with a `name` here and decorate it with @register:
MoEConfig accepts the name, examples/01_moe.py gains a row and a flag per field.

Shapes: n routed tokens on this rank, E routed experts, K top-k, S sequences.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields
from typing import ClassVar

import torch

RULES: dict[str, type] = {}  # name -> rule class, filled by @register


def register(cls):
    RULES[cls.name] = cls
    return cls


@dataclass
class Routing:
    """What a rule may read about one training forward of one MoE layer."""

    scores: torch.Tensor  # (n, E) affinity scores of this rank's routed tokens, with gradient
    indices: torch.Tensor  # (n, K) the experts chosen for them
    seq: torch.Tensor  # (n,) sequence number of each routed token on this rank, 0..S-1
    counts: torch.Tensor  # (E,) assignments chosen per expert, all ranks (before any capacity drop)
    n_tokens: int  # routed tokens, all ranks
    n_seqs: int  # sequences with at least one routed token, all ranks


@dataclass
class Rule:
    """A balancing rule. Override what the rule does; the defaults do nothing. Its dataclass
    fields are its hyperparameters: finite numbers >= 0, each with a "help" for its flag."""

    name: ClassVar[str] = ""
    uses_bias: ClassVar[bool] = False  # does the gate add the bias b to the scores when choosing experts?

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"balancing rule {self.name!r}: {f.name} must be a finite number >= 0, got {v!r}")

    def loss(self, r: Routing, cfg) -> torch.Tensor | None:
        """A term added to the training loss (this rank's share of it), or None."""
        return None

    def update(self, bias: torch.Tensor, load: torch.Tensor, cfg) -> None:
        """After an optimiser step: adjust the gate bias (E,) in place from the load (E,) since the last step."""


@register
@dataclass
class NoBalance(Rule):
    name: ClassVar[str] = "none"


def normalised(scores: torch.Tensor) -> torch.Tensor:
    # s'_{i,t} = s_{i,t} / sum_j s_{j,t}   (a no-op for softmax scores; V3 normalises its sigmoids)
    return scores / scores.sum(-1, keepdim=True)


@register
@dataclass
class AuxLoss(Rule):
    name: ClassVar[str] = "aux_loss"
    alpha: float = field(default=0.01, metadata={"help": "weight alpha of the batch-wise auxiliary loss (Switch: 0.01)"})

    def loss(self, r, cfg):
        E, K = cfg.n_experts, cfg.top_k
        f = r.counts.to(r.scores) / (r.n_tokens * K)  # (E,) share of all assignments: a count, no gradient
        P = normalised(r.scores).sum(0) / r.n_tokens  # (E,) this rank's part of the mean probability
        # L_aux = alpha * E * sum_i f_i * P_i      (= alpha at perfect balance, f_i = P_i = 1/E)
        return self.alpha * E * (f * P).sum()


@register
@dataclass
class SequenceAuxLoss(Rule):
    name: ClassVar[str] = "seq_aux"
    alpha: float = field(default=0.0001, metadata={"help": "weight alpha of V3's sequence-wise loss (V3: 0.0001)"})

    def loss(self, r, cfg):
        E, K = cfg.n_experts, cfg.top_k
        S = int(r.seq.max()) + 1 if len(r.seq) else 0
        T = torch.bincount(r.seq, minlength=S).to(r.scores)[:, None]  # (S, 1) routed tokens per sequence
        chosen = torch.zeros(S, E, device=r.scores.device)
        chosen.index_put_((r.seq.repeat_interleave(K), r.indices.flatten()),
                          torch.ones(r.indices.numel(), device=r.scores.device), accumulate=True)  # (S, E)
        # f_i = E / (K T) * sum_t 1(expert i in token t's top K)        (V3 eq. 18, per sequence)
        f = E / (K * T.clamp(min=1)) * chosen.to(r.scores)
        # P_i = (1 / T) * sum_t s'_{i,t}                                   (V3 eqs. 19-20)
        P = torch.zeros(S, E, dtype=r.scores.dtype, device=r.scores.device).index_add(0, r.seq, normalised(r.scores))
        P = P / T.clamp(min=1)
        # L_Bal = alpha * sum_i f_i P_i for each sequence (eq. 17), averaged over all sequences
        return self.alpha * (f * P).sum() / max(r.n_seqs, 1)


@register
@dataclass
class BiasUpdate(Rule):
    name: ClassVar[str] = "bias"
    uses_bias: ClassVar[bool] = True
    gamma: float = field(default=0.001, metadata={"help": "speed gamma of V3's bias update b_i += gamma sign(...)"})

    def update(self, bias, load, cfg):
        bias.copy_(bias_update(bias, load, self.gamma))


def bias_update(bias: torch.Tensor, load: torch.Tensor, gamma: float) -> torch.Tensor:
    """V3's auxiliary-loss-free rule: the new bias (E,) from the bias (E,) and the load (E,) since the last step.

    A pure function (the input is not changed), so BiasUpdate and the workshop's
    `bias_update` exercise (toyds check bias_update) share it.
    """
    if load.sum() == 0:  # nothing routed since the last step
        return bias.clone()
    # b_i += gamma * sign(mean_load - load_i): busy experts become less attractive
    return bias + gamma * torch.sign(load.mean() - load).to(bias)


# ----------------------------------------------------------------- combining


def parse(balance: str, params: dict | None = None) -> list[Rule]:
    """'bias+seq_aux' -> [BiasUpdate(), SequenceAuxLoss()], with params {"bias": {"gamma": 0.01}}
    setting a rule's fields; a clear error for an unknown rule, an unused one or an unknown field."""
    if not isinstance(balance, str) or not balance:
        raise ValueError(f"balance must be a rule name such as 'bias' or 'bias+seq_aux', got {balance!r}")
    names = balance.split("+")
    for n in names:
        if n not in RULES:
            raise ValueError(f"unknown balancing rule {n!r} in balance={balance!r}; rules are {sorted(RULES)}, "
                             f"combined with '+', e.g. 'bias+seq_aux'")
    if len(set(names)) != len(names) or ("none" in names and len(names) > 1):
        raise ValueError(f"balance={balance!r} repeats a rule or combines 'none' with others")
    params = params or {}
    if not isinstance(params, dict) or (unused := sorted(set(params) - set(names))):
        raise ValueError(f"balance_params={params!r} must map rules of balance={balance!r} to their fields"
                         + (f"; {unused[0]!r} is not one of them" if isinstance(params, dict) else ""))
    rules = []
    for n in names:
        own = {f.name for f in fields(RULES[n])}
        if bad := sorted(set(params.get(n, {})) - own):
            raise ValueError(f"balancing rule {n!r} has no parameter {bad[0]!r}; its parameters are "
                             f"{sorted(own) or 'none'}")
        rules.append(RULES[n](**params.get(n, {})))
    return rules


def uses_bias(balance: str) -> bool:
    return any(RULES[n].uses_bias for n in balance.split("+") if n in RULES)


def add_rule_args(parser: argparse.ArgumentParser, number_type) -> None:
    """One flag per field of every rule: --aux-loss-alpha, --seq-aux-alpha, --bias-gamma, ..."""
    for name, rule in RULES.items():
        for f in fields(rule):
            parser.add_argument(f"--{name.replace('_', '-')}-{f.name.replace('_', '-')}", type=number_type,
                                default=f.default, dest=f"balance__{name}__{f.name}", metavar=f.name.upper(),
                                help=f"balance={name!r}: {f.metadata.get('help', f.name)}")


def params_from_args(args, balance: str) -> dict:
    """{rule: {field: value}} from add_rule_args's flags, for the rules of `balance`."""
    return {n: {f.name: getattr(args, f"balance__{n}__{f.name}") for f in fields(RULES[n])}
            for n in balance.split("+") if fields(RULES[n])}


def recipes() -> list[str]:
    """Every registered rule on its own, then V3's combination: the rows of examples/01_moe.py."""
    return list(RULES) + ["bias+seq_aux"]


def layer_loss(rules: list[Rule], r: Routing, cfg) -> torch.Tensor | None:
    """The sum of the rules' loss terms for one layer, or None when no rule adds one."""
    terms = [t for t in (rule.loss(r, cfg) for rule in rules) if t is not None]
    return torch.stack(terms).sum() if terms else None


def model_loss(model) -> torch.Tensor | None:
    """Sum of every MoE layer's balancing loss from the model's last training forward (None if none)."""
    layers = model.moe_layers() if hasattr(model, "moe_layers") else []
    terms = [m.balance_loss for m in layers if m.balance_loss is not None]
    return torch.stack(terms).sum() if terms else None


@torch.no_grad()
def after_step(model, parallel=None) -> None:
    """Run after every optimiser step: each layer's rules see the load since the last step.

    Under data parallelism each rank counted only its own tokens, so the loads are
    summed over ranks first, and every rank moves its bias the same way. An
    expert-parallel layer counts globally already (`counts_are_global`).
    """
    for m in model.moe_layers() if hasattr(model, "moe_layers") else []:
        load = m.pending_load
        if parallel is not None and not getattr(m, "counts_are_global", False):
            load = parallel.all_reduce_sum(load)
        for rule in m.rules:
            rule.update(m.gate.bias, load, m.cfg)
        m.step_load = load  # the load of this optimiser step's training tokens (routing.LoadCurve reads it)
        m.pending_load = torch.zeros_like(load)
