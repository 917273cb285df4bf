"""The configuration of a DeepSeekMoE layer, checked before anything is built.

One dataclass for the layer of moe/layer.py: how many experts, how many each token
uses, how the gate scores and groups them (V3: sigmoid scores, 8 groups of which
the best 4 are eligible, top-8 of 256 routed experts plus 1 shared), which balancing
rules run (moe/balance.py) with their hyperparameters, and how tokens reach their
experts (moe/dispatch.py). Every value that cannot work raises a ValueError naming
it and what would be valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from toyds.moe import balance

SCORE_FUNCS = ("softmax", "sigmoid")
DISPATCH = ("auto", "loop", "sorted", "grouped_mm")


@dataclass
class MoEConfig:
    dim: int = 128  # model width D
    n_experts: int = 8  # routed experts E
    top_k: int = 2  # routed experts per token K
    n_shared_experts: int = 1  # experts every token passes through (0 = none)
    expert_dim: int = 128  # hidden width H of each expert's SwiGLU
    score_func: str = "sigmoid"  # "sigmoid" (V3, the default) or "softmax" (DeepSeek-V2) affinity scores
    n_groups: int = 1  # experts split into this many groups (1 = no group limit)
    topk_groups: int = 1  # only the best this-many groups are eligible per token
    route_scale: float = 1.0  # the gate weights are multiplied by this
    balance: str = "bias"  # rules from moe/balance.py joined by "+": none, aux_loss, seq_aux, bias, "bias+seq_aux"
    balance_params: dict = field(default_factory=dict)  # each rule's fields, e.g. {"bias": {"gamma": 0.001}}
    capacity_factor: float | None = None  # None: keep every token; else drop past cf * N * K / E per expert
    dispatch: str = "auto"  # "loop", "sorted", "grouped_mm", or "auto" (grouped_mm on CUDA, loop on a CPU)

    def __post_init__(self):
        for name in ("dim", "n_experts", "top_k", "expert_dim", "n_groups", "topk_groups"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"MoEConfig.{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.n_shared_experts, int) and self.n_shared_experts >= 0):
            raise ValueError(f"MoEConfig.n_shared_experts must be an integer >= 0, got {self.n_shared_experts!r}")
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k={self.top_k} cannot exceed n_experts={self.n_experts}")
        if self.n_experts % self.n_groups:
            raise ValueError(f"n_groups={self.n_groups} must divide n_experts={self.n_experts}")
        if self.topk_groups > self.n_groups:
            raise ValueError(f"topk_groups={self.topk_groups} cannot exceed n_groups={self.n_groups}")
        per_group = self.n_experts // self.n_groups
        if self.top_k > self.topk_groups * per_group:
            raise ValueError(
                f"top_k={self.top_k} needs more experts than the {self.topk_groups} eligible groups of "
                f"{per_group} hold; raise topk_groups or lower top_k"
            )
        if self.n_groups > 1 and balance.uses_bias(self.balance) and per_group < 2:
            raise ValueError(f"with balance='bias' a group's score sums its top-2 experts; groups of {per_group} are too small")
        if self.score_func not in SCORE_FUNCS:
            raise ValueError(f"score_func must be one of {SCORE_FUNCS}, got {self.score_func!r}")
        balance.parse(self.balance, self.balance_params)  # raises for an unknown rule or parameter, naming the valid ones
        if self.dispatch not in DISPATCH:
            raise ValueError(f"dispatch must be one of {DISPATCH}, got {self.dispatch!r}")
        if not (math.isfinite(self.route_scale) and self.route_scale > 0):
            raise ValueError(f"route_scale must be a finite number > 0, got {self.route_scale!r}")
        if self.capacity_factor is not None and not (math.isfinite(self.capacity_factor) and self.capacity_factor > 0):
            raise ValueError(f"capacity_factor must be None or a finite number > 0, got {self.capacity_factor!r}")

    @classmethod
    def from_dict(cls, d: dict) -> MoEConfig:
        """A MoEConfig from its fields, including a checkpoint's from before toyds's 0.1 layout: its
        aux_loss_alpha, seq_aux_alpha and bias_update_speed become the balance_params of the rules
        it used (an unused rule's value never mattered, and is dropped)."""
        d = dict(d)
        rules = str(d.get("balance", "bias")).split("+")
        params = {k: dict(v) for k, v in (d.get("balance_params") or {}).items()}
        for old, (rule, name) in LEGACY_FIELDS.items():
            if old in d:
                value = d.pop(old)
                if rule in rules:
                    params.setdefault(rule, {}).setdefault(name, value)
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(d) - known):
            raise ValueError(f"MoEConfig has no field {unknown[0]!r}; its fields are {sorted(known)}")
        return cls(**{**d, "balance_params": params})


# MoEConfig fields of toyds before its 0.1 layout -> (balancing rule, its field)
LEGACY_FIELDS = {"aux_loss_alpha": ("aux_loss", "alpha"), "seq_aux_alpha": ("seq_aux", "alpha"),
                 "bias_update_speed": ("bias", "gamma")}
