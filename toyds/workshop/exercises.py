"""The workshop's exercises: which toyds function each one cuts out, and the cases that check it.

Each exercise is one idea's heart, a pure function of tensors or strings that toyds
itself calls (so a solution drops into the library unchanged). A case is an input
chosen to teach one thing: it runs the participant's function and toyds's own on
the same input and compares what comes back (toyds/workshop/checker.py does the comparing
and the explaining). Expected values always come from the library; the input is
shown as a person would type it, and the hint says what the case is about, never
the code. The stubs are workshop/exercises/NAME.py, the solutions workshop/solutions/.

    advantages         toyds.rl.grpo_loss.group_advantages            A_i = (r_i - mean_g) / (std_g + eps)
    grpo_loss          toyds.rl.grpo_loss.kl_k3, policy_loss           clipped surrogate + beta k3 KL
    gate               toyds.moe.gate.route                         bias chooses, does not weight; groups
    bias_update        toyds.moe.balance.bias_update               b_i += gamma sign(mean_load - load_i)
    accuracy_reward    toyds.rl.rewards.accuracy_reward           one plain answer block, or nothing
    kd_loss            toyds.distill.losses.kd_loss                   tau^2 KL(P || Q) or KL(Q || P) or JSD
    all_to_all_counts  toyds.parallel.expert_parallel.send_counts       copies per expert, rows per rank
    mla_absorb         toyds.efficient.mla.absorbed_attention            W_UK into the query, W_UV after attending

This file holds the Exercise type and the list above; the cases are in
toyds/workshop/cases_rl.py (advantages, grpo_loss, accuracy_reward, kd_loss) and
toyds/workshop/cases_moe.py (gate, bias_update, all_to_all_counts, mla_absorb), and the
Case type and its helpers in toyds/workshop/cases_base.py.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from toyds.workshop.cases_base import Case  # noqa: F401  (re-exported: a case of an exercise)
from toyds.workshop.cases_moe import _bias_cases, _counts_cases, _gate_cases, _mla_cases
from toyds.workshop.cases_rl import _accuracy_cases, _advantages_cases, _grpo_cases, _kd_cases


@dataclass
class Exercise:
    name: str
    title: str  # what it teaches, one line
    functions: tuple[str, ...]  # the functions the participant writes, checked in this order
    mirrors: tuple[str, ...]  # "module.function" in toyds, one per function
    notebook: str  # the notebook that tells its story
    after: str  # said when every case passes: where the solution goes next ({file}: the participant's file)
    make_cases: Callable[[], list[Case]] = field(repr=False, default=list)

    def references(self) -> list[Callable]:
        out = []
        for dotted in self.mirrors:
            module, fn = dotted.rsplit(".", 1)
            out.append(getattr(importlib.import_module(module), fn))
        return out

    def cases(self) -> list[Case]:
        return self.make_cases()


# ------------------------------------------------------------------ registry

_EX = [
    Exercise("advantages", "the group-relative advantage of GRPO (DeepSeekMath 4.1)", ("group_advantages",),
             ("toyds.rl.grpo_loss.group_advantages",), "notebooks/03_r1_zero.ipynb",
             "Now drive R1-Zero with it: python examples/03_r1_zero.py --advantages {file} (or set ADVANTAGES_FILE "
             "in notebooks/03_r1_zero.ipynb)", _advantages_cases),
    Exercise("grpo_loss", "the clipped GRPO loss with Schulman's k3 KL", ("kl_k3", "policy_loss"),
             ("toyds.rl.grpo_loss.kl_k3", "toyds.rl.grpo_loss.policy_loss"), "notebooks/03_r1_zero.ipynb",
             "Your loss is the one toyds.rl.grpo.train_grpo minimises.", _grpo_cases),
    Exercise("gate", "DeepSeek-V3's gate: the bias chooses, it does not weight; group-limited routing", ("route",),
             ("toyds.moe.gate.route",), "notebooks/01_moe.ipynb",
             "Gate.route in toyds/moe/layer.py calls exactly this function.", _gate_cases),
    Exercise("bias_update", "DeepSeek-V3's auxiliary-loss-free balancing rule", ("bias_update",),
             ("toyds.moe.balance.bias_update",), "notebooks/01_moe.ipynb",
             "BiasUpdate in toyds/moe/balance.py calls exactly this after every optimiser step.", _bias_cases),
    Exercise("accuracy_reward", "a rule-based accuracy reward that cannot be gamed (R1 2.2.2)", ("accuracy_reward",),
             ("toyds.rl.rewards.accuracy_reward",), "notebooks/02_rewards.ipynb",
             "GRPO can now train on it without learning to hack it.", _accuracy_cases),
    Exercise("kd_loss", "forward, reverse and JSD distillation losses", ("kd_loss",), ("toyds.distill.losses.kd_loss",),
             "notebooks/04_distillation.ipynb", "toyds.distill.kd.train_logit_kd minimises exactly this.", _kd_cases),
    Exercise("all_to_all_counts", "the all-to-all send counts of expert parallelism", ("send_counts",),
             ("toyds.parallel.expert_parallel.send_counts",), "notebooks/06_scaling_out.ipynb",
             "ExpertParallelMoE.routed sends these sizes before the token rows.", _counts_cases),
    Exercise("mla_absorb", "MLA's absorbed attention: W_UK into the query, W_UV after attending",
             ("absorbed_attention",), ("toyds.efficient.mla.absorbed_attention",), "notebooks/08_cheaper_to_run.ipynb",
             "MLA with attn_impl='absorb' computes exactly this, from a cache of c_KV and k^R alone.", _mla_cases),
]
EXERCISES: dict[str, Exercise] = {e.name: e for e in _EX}
