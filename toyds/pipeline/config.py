"""What a pipeline run is set by: PipelineConfig, the --set overrides, the quick preset, and the
settings each stage depends on (what `resume` compares before reusing a stage's work).

The defaults are the converged recipe of docs/lab/26_convergence.md: a base whose traces reach
0.95 on 3-digit sums well inside its budget on every seed tried, then a short, gentle GRPO.
"""

from __future__ import annotations

from dataclasses import dataclass

from toyds.experiment.seeds import Claim
from toyds.rl import reward_registry
from toyds.tasks.base import WEIGHTINGS
from toyds.tasks.registry import make_task
from toyds.train.trainer import OPTIMIZERS

STUDENT_METHODS = ("sequence_kd", "logit_kd", "on_policy")


@dataclass
class PipelineConfig:
    task: str = "arithmetic"  # the task (tasks/registry.py)
    digits: tuple | None = None  # arithmetic tasks: difficulty levels, digits per operand (None: the task's 1,2,3)
    ops: tuple | None = None  # arithmetic tasks: operations (None: the task's +)
    reward: str = reward_registry.R1  # GRPO's rewards, name:weight pairs (rl/reward_registry.py)
    base_preset: str = "small"  # size of the MoE base (its active parameters)
    n_experts: int = 8  # routed experts per MoE layer
    base_problems: int = 6000  # distinct training problems in the base corpus (each seen ~8 times in 800 steps)
    base_weighting: str = "harder"  # "harder": level i of the task visited i times per cycle (half the base corpus
    #                                 is 3-digit sums); "even": the levels in turn. docs/lab/26 measured both
    base_steps: int = 800  # base pretraining steps (the traces converge by ~600 with "harder")
    base_batch: int = 64  # sequences per base step
    base_lr: float = 3e-3  # base pretraining peak learning rate
    base_optimizer: str = "adamw"  # the base's optimiser (train/trainer.py's OPTIMIZERS)
    grpo_steps: int = 30  # R1-Zero GRPO steps (greedy think rate reaches 1 by step ~20 on a converged base)
    grpo_prompts: int = 16  # prompts per GRPO step
    group_size: int = 8  # G samples per prompt
    grpo_lr: float = 1e-4  # GRPO learning rate (the think rate climbs about linearly in steps x lr; 2e-4 blurred
    #                        the traces' digit sums on 2 seeds of 6: docs/lab/26)
    grpo_beta: float = 0.05  # weight of the k3 KL to the base: a leash on the traces the base executes well
    max_new_tokens: int = 0  # completion cap of GRPO and rejection sampling; 0 = the longest worked trace + 8
    sample_prompts: int = 2000  # training problems the RL model answers for distillation
    samples_per_prompt: int = 4  # k completions per problem (distinct right ones kept)
    student_preset: str = "tiny"  # size of the dense student
    student_steps: int = 800  # student steps
    student_lr: float = 1e-2  # student peak learning rate (tiny models like it high)
    student_optimizer: str = "muon_attention"  # the students' optimiser (the base keeps AdamW: see docs/lab/26)
    student_method: str = "sequence_kd"  # the student: "sequence_kd" (R1), "logit_kd" or "on_policy" (pipeline.py)
    on_policy_steps: int = 50  # student_method="on_policy": on-policy steps after student_steps / 2 of sequence KD
    logit_kd: bool = False  # also train student_logit_kd (text + logits); examples/04 compares the two at length
    kd_alpha: float = 0.5  # student_logit_kd loss = alpha * logit KD + (1 - alpha) * next-token loss
    kd_temperature: float = 1.0  # softening tau of the logit KD
    eval_per_level: int = 100  # held-out problems per difficulty level
    seed: int = 0  # one seed for everything

    def __post_init__(self):  # a bad setting is named before the base trains, not after it
        for name in ("base_optimizer", "student_optimizer"):
            if getattr(self, name) not in OPTIMIZERS:
                raise ValueError(f"PipelineConfig.{name} must be one of {OPTIMIZERS}, got {getattr(self, name)!r}")
        if self.student_method not in STUDENT_METHODS:
            raise ValueError(f"PipelineConfig.student_method must be one of {STUDENT_METHODS}, got {self.student_method!r}")
        if self.base_weighting not in WEIGHTINGS:
            raise ValueError(f"PipelineConfig.base_weighting must be one of {WEIGHTINGS}, got {self.base_weighting!r}")
        if not (type(self.base_problems) is int and self.base_problems >= 1):
            raise ValueError(f"PipelineConfig.base_problems must be a whole number >= 1, got {self.base_problems!r}")



SETTABLE = ("base_problems", "base_weighting", "base_steps", "base_batch", "base_lr", "base_optimizer", "grpo_steps",
            "grpo_prompts", "group_size", "grpo_lr", "grpo_beta", "sample_prompts", "samples_per_prompt",
            "student_steps", "student_lr", "student_optimizer", "student_method", "on_policy_steps", "eval_per_level")


def parse_settings(pairs: list[str]) -> dict:
    """`--set base_lr=1e-3 --set student_optimizer=adamw` as PipelineConfig fields, each typed as its
    default; an unknown field or a value of the wrong type is named with what is valid."""
    defaults, out = PipelineConfig(), {}
    for pair in pairs:
        field, sep, text = pair.partition("=")
        if not sep or field not in SETTABLE:
            raise ValueError(f"--set wants FIELD=VALUE with FIELD one of {', '.join(SETTABLE)}; got {pair!r}")
        kind = type(getattr(defaults, field))
        try:
            value = kind(text) if kind is not int else int(text, 10)
        except ValueError:
            raise ValueError(f"--set {field} wants {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        PipelineConfig(**{field: value})  # a value the field cannot take (base_weighting=heavy) is named here
        out[field] = value
    return out


def headline(config: dict) -> list[str]:
    """The figures a multi-seed run summarises: every model's accuracy and the student's ratio."""
    models = ("base", "r1_zero", "student") + (("student_logit_kd",) if config.get("logit_kd") else ())
    hardest = task_of(PipelineConfig(**config)).levels[-1]  # e.g. 3-digit sums
    return ([f"models.{m}.accuracy" for m in models] + ["base_forced_think.accuracy"]
            + [f"models.{m}.by_difficulty.{hardest}" for m in models[1:]] + ["student_over_r1_zero"])


CLAIMS = [Claim("the distilled student reaches >= 0.9 of the R1-Zero model's accuracy", "student_over_r1_zero", ">=", 0.9),
          Claim("R1-Zero beats its base by >= 0.3", "r1_zero_minus_base", ">=", 0.3)]
QUICK = dict(base_preset="tiny", base_steps=300, base_lr=1e-2, grpo_steps=10, grpo_prompts=8, group_size=8,
             sample_prompts=300, samples_per_prompt=2, student_steps=300, eval_per_level=30)

# the settings each stage depends on, itself and through the stages before it (resume compares these)
_SHARED = ("task", "digits", "ops", "seed", "eval_per_level")
NEEDS = {"base": _SHARED + ("base_preset", "n_experts", "base_problems", "base_weighting", "base_steps", "base_batch",
                            "base_lr", "base_optimizer")}
NEEDS["r1_zero"] = NEEDS["base"] + ("reward", "grpo_steps", "grpo_prompts", "group_size", "grpo_lr", "grpo_beta",
                                    "max_new_tokens")
NEEDS["samples"] = NEEDS["r1_zero"] + ("sample_prompts", "samples_per_prompt")
NEEDS["student"] = NEEDS["samples"] + ("student_preset", "student_steps", "student_lr", "student_optimizer",
                                       "student_method", "on_policy_steps", "kd_alpha", "kd_temperature")
NEEDS["student_logit_kd"] = NEEDS["samples"] + ("student_preset", "student_steps", "student_lr", "student_optimizer",
                                                "kd_alpha", "kd_temperature")


def task_of(cfg: PipelineConfig):
    """The pipeline's task, built from its name and the options given."""
    return make_task(cfg.task, **{k: getattr(cfg, k) for k in ("digits", "ops") if getattr(cfg, k) is not None})


def completion_cap(cfg: PipelineConfig) -> int:
    """GRPO's and rejection sampling's completion cap: cfg.max_new_tokens, or (0) the longest worked trace + 8."""
    return cfg.max_new_tokens or task_of(cfg).completion_cap()
