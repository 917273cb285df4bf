"""The whole R1 story in one run: MoE base -> R1-Zero -> rejection sampling -> small student.

DeepSeek's path, as the V3 and R1 reports tell it, at toy scale:

    base      pretrain a sparse MoE model on the mixed arithmetic corpus (V3: 2.1, 4)
    r1_zero   GRPO from the base with accuracy + format rewards only (R1: 2.2)
    samples   the RL model answers training problems k = 4 times; the rules keep the
              distinct right, well-formed completions (R1: 2.3.3, rejection sampling)
    student   a small *dense* model fine-tuned on those samples (R1: 2.4, how the
              Qwen and Llama models were distilled); with logit_kd=True also
              student_logit_kd, which matches the RL model's next-token distributions
    evaluate  every model on the same held-out problems

One function per stage, on any task (--task; arithmetic by default) with any rewards
(--reward; R1's pair by default). Each writes DIR/stages/<stage>.pt (or .json)
atomically, then DIR/stages/<stage>.metrics.json, last, with the settings it ran
with; `resume=True` reruns a stage (and every later one) unless its recorded
settings match this run's and its artefact loads (pipeline/stages.py). The R1
pipeline's SFT cold start, its second RL stage and its non-reasoning data are left
out: the toy keeps the R1-Zero branch and the distillation branch.
Used by `toyds pipeline` and examples/05_pipeline.py.
"""

from __future__ import annotations

import copy
import json
import signal
import time
from dataclasses import asdict
from pathlib import Path

import torch

from toyds.core.model import GPT, make_config
from toyds.distill.kd import KDConfig, train_logit_kd
from toyds.distill.rejection import rejection_sample
from toyds.evaluate.accuracy import evaluate
from toyds.experiment.output import write_json
from toyds.moe.routing import LoadCurve
from toyds.pipeline.config import NEEDS, PipelineConfig, completion_cap, task_of
from toyds.pipeline.report import report
from toyds.pipeline.stages import Interrupted, Stages
from toyds.rl import reward_registry
from toyds.rl.grpo import GRPOConfig, train_grpo
from toyds.train.checkpoint import save_checkpoint
from toyds.train.pretrain import BaseRecipe, pretrain_base
from toyds.train.supervised import TrainConfig, train_supervised


def _measure(model, task, test, seconds: float) -> dict:
    res = evaluate(model, task, test)
    return {"params_total": model.params_total(), "params_active": model.params_active(), "accuracy": res["accuracy"],
            "by_difficulty": {d: r["accuracy"] for d, r in res["by_difficulty"].items()},
            "format_rate": res["format_rate"], "think_rate": res["think_rate"],
            "mean_think_length": res["mean_think_length"], "seconds": seconds}


class Run(Stages):
    """A pipeline run's stages under DIR/stages, each resumed only if its NEEDS settings match."""

    def __init__(self, out: Path, cfg: PipelineConfig, device, resume: bool, log):
        super().__init__(out, cfg, device, resume, log, NEEDS)
        self.task = task_of(cfg)


def budget(cfg: PipelineConfig, steps: int, lr: float, optimizer: str) -> TrainConfig:
    return TrainConfig.recipe(steps, lr, seed=cfg.seed, optimizer=optimizer)


def stage_base(run: Run, test):
    """1. a sparse MoE model pretrained on the mixed corpus."""
    cfg = run.cfg
    if (m := run.finished("base", "base.pt")) and (model := run.load("base")):
        run.log("base: resumed from checkpoint")
        return model, m if "forced_think" in m else {**m, "forced_think": _forced_think(model, run.task, test)}
    run.ran("base", "base.pt")
    moe = dict(n_experts=cfg.n_experts, top_k=2, n_shared_experts=1, balance="bias")
    recipe = BaseRecipe(steps=cfg.base_steps, batch_size=cfg.base_batch, lr=cfg.base_lr, problems=cfg.base_problems,
                        weighting=cfg.base_weighting, optimizer=cfg.base_optimizer)
    curve = LoadCurve(layer=0, every=10)  # for the expert-load picture
    t0 = time.perf_counter()
    model = pretrain_base(run.task, recipe, cfg.seed, run.device, make_config(cfg.base_preset, ffn="moe", moe=moe),
                          desc="1/5 base (MoE)", step_callback=curve)
    save_checkpoint(run.dir / "base.pt", model, meta={"stage": "base"})
    seconds = time.perf_counter() - t0
    # R1-Zero's premise: greedy, the base answers directly (low accuracy); made to open with <think>,
    # it executes the traces it was pretrained on. RL is to find the second, not learn it.
    return model, run.done("base", {**_measure(model, run.task, test, seconds), "load_curve": curve.points,
                                    "forced_think": _forced_think(model, run.task, test)})


def _forced_think(model, task, test) -> dict:
    """The base made to open with <think>: what RL can select (R1-Zero's premise)."""
    forced = evaluate(model, task, test, prefix="<think>")
    return {"accuracy": forced["accuracy"], "by_difficulty": {d: r["accuracy"] for d, r in forced["by_difficulty"].items()}}


def stage_r1_zero(run: Run, base, rl_problems, test):
    """2. GRPO with rule-based rewards, from a copy of the base."""
    cfg = run.cfg
    if (m := run.finished("r1_zero", "r1_zero.pt")) and (model := run.load("r1_zero")):
        run.log("r1_zero: resumed from checkpoint")
        return model, m
    run.ran("r1_zero", "r1_zero.pt")
    policy = copy.deepcopy(base)  # the base stays as it was, for the table and the heat-map
    t0 = time.perf_counter()
    gcfg = GRPOConfig(steps=cfg.grpo_steps, prompts_per_step=cfg.grpo_prompts, group_size=cfg.group_size,
                      lr=cfg.grpo_lr, beta=cfg.grpo_beta, max_new_tokens=completion_cap(cfg), seed=cfg.seed)
    fns, weights = reward_registry.resolve(cfg.reward, run.task)
    history = train_grpo(policy, rl_problems, gcfg, reward_fns=fns, reward_weights=weights,
                         measure_fn=run.task.measure, desc="2/5 R1-Zero GRPO")
    save_checkpoint(run.dir / "r1_zero.pt", policy, meta={"stage": "r1_zero"})
    m = _measure(policy, run.task, test, time.perf_counter() - t0)
    m["history"] = [{k: r[k] for k in ("step", "reward", "accuracy", "format_rate", "think_rate", "mean_length")}
                    for r in history]
    return policy, run.done("r1_zero", m)


def stage_samples(run: Run, policy):
    """3. rejection sampling of the RL model's reasoning."""
    cfg = run.cfg
    if m := run.finished("samples", "samples.json"):
        try:
            kept = [tuple(p) for p in json.loads((run.dir / "samples.json").read_text())]
            run.log("samples: resumed")
            return kept, m
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as e:
            run.log(f"samples: {run.dir / 'samples.json'} is unreadable ({e}); sampling again")
    run.ran("samples", "samples.json")
    t0 = time.perf_counter()
    problems = run.task.sample(cfg.sample_prompts, "train", seed=cfg.seed + 2)
    # k samples per problem, one copy of each distinct right completion (the rule of rejection-sampling
    # fine-tuning, Yuan et al. 2023): k > 1 reaches the hard problems the RL model solves only sometimes
    kept, stats = rejection_sample(policy, run.task, problems, cfg.samples_per_prompt,
                                   max_new_tokens=completion_cap(cfg), seed=cfg.seed, dedupe=True)
    write_json(run.dir / "samples.json", kept)
    return kept, run.done("samples", {**stats, "seconds": time.perf_counter() - t0})


def stage_student(run: Run, name: str, kept, policy, test):
    """4. a small dense model distilled from the RL model, by cfg.student_method: from its text
    (sequence_kd, as R1 did), its text and its logits (logit_kd, white-box), or its text for half
    the steps and then on its own samples graded by the RL model at every token (on_policy: from
    random weights a student has nothing of its own worth grading, so Qwen3's order). The extra
    student_logit_kd (cfg.logit_kd) is always logit KD."""
    cfg = run.cfg
    if (m := run.finished(name, f"{name}.pt")) and run.load(name) is not None:
        run.log(f"{name}: resumed from checkpoint")
        return m
    run.ran(name, f"{name}.pt")
    torch.manual_seed(cfg.seed)  # both students start from the same weights
    student = GPT(make_config(cfg.student_preset)).to(run.device)
    t0 = time.perf_counter()
    train = budget(cfg, cfg.student_steps, cfg.student_lr, cfg.student_optimizer)
    method = cfg.student_method if name == "student" else "logit_kd"
    if method == "sequence_kd":
        train_supervised(student, kept, train, desc="4/5 student: sequence KD")
    elif method == "logit_kd":
        kd = KDConfig(alpha=cfg.kd_alpha, temperature=cfg.kd_temperature, train=train)
        train_logit_kd(student, policy, kept, kd, desc=f"{4 if name == 'student' else 5}/5 student: logit KD")
    else:  # on_policy: sequence KD for half the steps, then reverse KL on the student's own samples, at a
        # tenth of the rate: restarting at the full rate wrecked converged students (docs/lab/28_on_policy.md)
        train_supervised(student, kept, budget(cfg, cfg.student_steps // 2, cfg.student_lr, cfg.student_optimizer),
                         desc="4/5 student: sequence KD, first half")
        kd = KDConfig(alpha=1.0, kind="reverse", on_policy=1.0, max_new_tokens=completion_cap(cfg),
                      train=budget(cfg, cfg.on_policy_steps, cfg.student_lr / 10, cfg.student_optimizer))
        train_logit_kd(student, policy, kept, kd, desc="4/5 student: on-policy KD")
    save_checkpoint(run.dir / f"{name}.pt", student, meta={"stage": name})
    return run.done(name, _measure(student, run.task, test, time.perf_counter() - t0))


def run_pipeline(out: Path, cfg: PipelineConfig, device="cpu", resume: bool = False, log=print) -> dict:
    """Run (or resume) every stage under `out`; returns the metrics dict. A Ctrl-C (KeyboardInterrupt)
    becomes pipeline.stages.Interrupted, which names the stage it stopped and the stages kept."""
    run = Run(Path(out), cfg, device, resume, log)
    try:
        return _run_stages(run, Path(out), cfg, log)
    except Interrupted:
        raise
    except KeyboardInterrupt as e:
        kept = [s for s in run.kept if s != run.current]
        raise Interrupted(run.current, kept, run.dir, getattr(e, "signum", signal.SIGINT)) from e


def _run_stages(run: Run, out: Path, cfg: PipelineConfig, log) -> dict:
    t_start = time.perf_counter()
    task = run.task
    test = task.sample(cfg.eval_per_level * len(task.levels), "test", unique=True)  # small levels give what they hold
    rl_problems = task.sample(5000, "rl", seed=cfg.seed + 1)
    metrics = {}
    base, metrics["base"] = stage_base(run, test)
    log(f"base: {metrics['base']['params_total']:,} parameters, {metrics['base']['params_active']:,} active; "
        f"held-out accuracy {metrics['base']['accuracy']:.3f}")
    policy, metrics["r1_zero"] = stage_r1_zero(run, base, rl_problems, test)
    log(f"r1_zero: held-out accuracy {metrics['r1_zero']['accuracy']:.3f}, "
        f"format rate {metrics['r1_zero']['format_rate']:.3f}")
    kept, samples = stage_samples(run, policy)
    log(f"samples: kept {samples['kept']}/{samples['samples']} ({samples['keep_rate']:.0%}) right, well-formed completions")
    if not kept:
        raise RuntimeError("the RL model wrote no correct, well-formed completion to distil; train longer")
    for name in ("student", "student_logit_kd")[: 2 if cfg.logit_kd else 1]:
        metrics[name] = stage_student(run, name, kept, policy, test)
        log(f"{name}: {metrics[name]['params_active']:,} active parameters, held-out accuracy "
            f"{metrics[name]['accuracy']:.3f}")
    pictures = report(out, task, metrics, base, kept, log)
    keys = ("params_total", "params_active", "accuracy", "by_difficulty", "format_rate", "mean_think_length", "seconds")
    return {"models": {n: {k: m[k] for k in keys} for n, m in metrics.items()},
            "base_forced_think": metrics["base"].get("forced_think"),
            "samples": {k: v for k, v in samples.items() if k not in ("settings", "sha256")}, "config": asdict(cfg),
            "pictures": pictures, "seconds_total": time.perf_counter() - t_start}


def run_seed(args, seed: int) -> dict:
    """One seed of `toyds pipeline --seeds N` (toyds/experiment/seeds.py runs it): the first seed's stages go in
    args.out, the others' in args.out/seed-<s>. args.config holds the PipelineConfig's other fields."""
    out = Path(args.out) if seed == args.seeds[0] else Path(args.out) / f"seed-{seed}"
    m = run_pipeline(out, PipelineConfig(**{**args.config, "seed": seed}), device=args.device, resume=args.resume)
    acc = {n: r["accuracy"] for n, r in m["models"].items()}
    return {**m, "student_over_r1_zero": acc["student"] / max(acc["r1_zero"], 1e-9),
            "r1_zero_minus_base": acc["r1_zero"] - acc["base"]}
