"""The whole R1 story in one run: MoE base -> R1-Zero -> rejection sampling -> small student.

DeepSeek's path, as the V3 and R1 reports tell it, at toy scale:

    base      pretrain a sparse MoE model on the mixed arithmetic corpus (V3: 2.1, 4)
    r1_zero   GRPO from the base with accuracy + format rewards only (R1: 2.2)
    samples   the RL model answers training problems k times; the rules keep the
              right, well-formed completions (R1: 2.3.3, rejection sampling)
    student   a small *dense* model fine-tuned on those samples (R1: 2.4, how the
              Qwen and Llama models were distilled); student_logit_kd also
              matches the RL model's next-token distributions (white-box KD)
    evaluate  every model on the same held-out problems

Each stage writes DIR/stages/<stage>.pt (or .json) and DIR/stages/<stage>.metrics.json
atomically, last; `resume=True` skips a stage whose both files exist, so an
interrupted run loses at most the stage in progress. The R1 pipeline's SFT
cold start, its second RL stage and its non-reasoning data are left out: the
toy keeps the R1-Zero branch and the distillation branch.

Used by `toyds pipeline` and examples/05_pipeline.py.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from toyds import plots
from toyds.arithmetic import build_corpus, sample_problems
from toyds.checkpoint import load_checkpoint, save_checkpoint
from toyds.distill import KDConfig, rejection_sample, train_logit_kd
from toyds.evaluate import evaluate, format_table
from toyds.grpo import GRPOConfig, train_grpo
from toyds.model import GPT, make_config
from toyds.routing import LoadCurve, specialisation
from toyds.runs import write_json
from toyds.train import TrainConfig, train_supervised

STAGES = ("base", "r1_zero", "samples", "student", "student_logit_kd")


@dataclass
class PipelineConfig:
    digits: tuple = (1, 2, 3)  # difficulty levels (digits per operand)
    ops: tuple = ("+",)  # operations
    base_preset: str = "small"  # size of the MoE base (its active parameters)
    n_experts: int = 8  # routed experts per MoE layer
    base_steps: int = 600  # base pretraining steps
    base_lr: float = 3e-3  # base pretraining peak learning rate
    grpo_steps: int = 80  # R1-Zero GRPO steps
    grpo_prompts: int = 16  # prompts per GRPO step
    group_size: int = 8  # G samples per prompt
    grpo_lr: float = 5e-5  # GRPO learning rate
    sample_prompts: int = 4000  # training problems the RL model answers for distillation
    samples_per_prompt: int = 1  # k completions per problem
    student_preset: str = "tiny"  # size of the dense student
    student_steps: int = 700  # student fine-tuning steps
    student_lr: float = 1e-2  # student peak learning rate (tiny models like it high)
    kd_alpha: float = 0.5  # student_logit_kd loss = alpha * logit KD + (1 - alpha) * next-token loss
    kd_temperature: float = 1.0  # softening tau of the logit KD (2 did worse here: see examples/04)
    eval_per_digit: int = 100  # held-out problems per difficulty
    seed: int = 0  # one seed for everything


QUICK = dict(base_preset="tiny", base_steps=300, base_lr=1e-2, grpo_steps=10, grpo_prompts=8, group_size=8,
             sample_prompts=300, samples_per_prompt=2, student_steps=300, eval_per_digit=30)


def _measure(model, test, seconds: float) -> dict:
    res = evaluate(model, test)
    return {
        "params_total": model.params_total(),
        "params_active": model.params_active(),
        "accuracy": res["accuracy"],
        "by_difficulty": {d: r["accuracy"] for d, r in res["by_difficulty"].items()},
        "format_rate": res["format_rate"],
        "think_rate": res["think_rate"],
        "mean_think_length": res["mean_think_length"],
        "seconds": seconds,
    }


def run_pipeline(out: Path, cfg: PipelineConfig, device="cpu", resume: bool = False, log=print) -> dict:
    """Run (or resume) every stage under `out`; returns the metrics dict it also writes."""
    out = Path(out)
    stages = out / "stages"
    stages.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    test = sample_problems(cfg.eval_per_digit * len(cfg.digits), digits=cfg.digits, ops=cfg.ops, split="test",
                           unique=True, allow_fewer=True)  # small cells give what they hold
    train_problems = sample_problems(20000, digits=cfg.digits, ops=cfg.ops, seed=cfg.seed)
    rl_problems = sample_problems(5000, digits=cfg.digits, ops=cfg.ops, seed=cfg.seed + 1)

    def done(stage):  # the artefact is written first, the metrics file last
        artefact = stages / ("samples.json" if stage == "samples" else f"{stage}.pt")
        return resume and artefact.is_file() and (stages / f"{stage}.metrics.json").is_file()

    def finish(stage, metrics):
        write_json(stages / f"{stage}.metrics.json", metrics)  # written last: marks the stage finished
        return metrics

    def budget(steps, lr=3e-3):
        return TrainConfig.recipe(steps, lr, seed=cfg.seed)

    metrics, extra = {}, {}

    # 1. base: a sparse MoE model pretrained on the mixed corpus
    if done("base"):
        base, _, _ = load_checkpoint(stages / "base.pt", device)
        metrics["base"] = json.loads((stages / "base.metrics.json").read_text())
        log("base: resumed from checkpoint")
    else:
        torch.manual_seed(cfg.seed)
        base = GPT(make_config(cfg.base_preset, ffn="moe", moe=dict(n_experts=cfg.n_experts, top_k=2,
                                                                      n_shared_experts=1, balance="bias"))).to(device)
        load_curve = LoadCurve(layer=0, every=10)  # for the expert-load picture

        t0 = time.perf_counter()
        train_supervised(base, build_corpus(train_problems, "base", seed=cfg.seed), budget(cfg.base_steps, cfg.base_lr),
                         desc="1/5 base (MoE)", step_callback=load_curve)
        save_checkpoint(stages / "base.pt", base, meta={"stage": "base"})
        m = _measure(base, test, time.perf_counter() - t0)
        m["load_curve"] = load_curve.points
        metrics["base"] = finish("base", m)
    log(f"base: {metrics['base']['params_total']:,} parameters, {metrics['base']['params_active']:,} active; "
        f"held-out accuracy {metrics['base']['accuracy']:.3f}")

    # 2. r1_zero: GRPO with rule-based rewards
    if done("r1_zero"):
        policy, _, _ = load_checkpoint(stages / "r1_zero.pt", device)
        metrics["r1_zero"] = json.loads((stages / "r1_zero.metrics.json").read_text())
        log("r1_zero: resumed from checkpoint")
    else:
        policy = copy.deepcopy(base)  # the base stays as it was, for the table and the heat-map
        t0 = time.perf_counter()
        gcfg = GRPOConfig(steps=cfg.grpo_steps, prompts_per_step=cfg.grpo_prompts, group_size=cfg.group_size,
                          lr=cfg.grpo_lr, seed=cfg.seed)
        history = train_grpo(policy, rl_problems, gcfg, desc="2/5 R1-Zero GRPO")
        save_checkpoint(stages / "r1_zero.pt", policy, meta={"stage": "r1_zero"})
        m = _measure(policy, test, time.perf_counter() - t0)
        m["history"] = [{k: r[k] for k in ("step", "reward", "accuracy", "format_rate", "think_rate", "mean_length")}
                        for r in history]
        metrics["r1_zero"] = finish("r1_zero", m)
    log(f"r1_zero: held-out accuracy {metrics['r1_zero']['accuracy']:.3f}, "
        f"format rate {metrics['r1_zero']['format_rate']:.3f}")

    # 3. samples: rejection sampling of the RL model's reasoning
    if done("samples"):
        kept = [tuple(p) for p in json.loads((stages / "samples.json").read_text())]
        extra["samples"] = json.loads((stages / "samples.metrics.json").read_text())
        log("samples: resumed")
    else:
        t0 = time.perf_counter()
        problems = sample_problems(cfg.sample_prompts, digits=cfg.digits, ops=cfg.ops, seed=cfg.seed + 2)
        kept, stats = rejection_sample(policy, problems, cfg.samples_per_prompt, seed=cfg.seed)
        write_json(stages / "samples.json", kept)
        extra["samples"] = finish("samples", {**stats, "seconds": time.perf_counter() - t0})
    s = extra["samples"]
    log(f"samples: kept {s['kept']}/{s['samples']} ({s['keep_rate']:.0%}) right, well-formed completions")
    if not kept:
        raise RuntimeError("the RL model wrote no correct, well-formed completion to distil; train longer")

    # 4. students: small dense models distilled from the RL model, from its text
    #    (sequence-level, as R1 did) and from its text and its logits (white-box)
    def new_student():
        torch.manual_seed(cfg.seed)  # both students start from the same weights
        return GPT(make_config(cfg.student_preset)).to(device)

    def sequence_kd(student):
        train_supervised(student, kept, budget(cfg.student_steps, cfg.student_lr), desc="4/5 student: sequence KD")

    def logit_kd(student):
        kd = KDConfig(alpha=cfg.kd_alpha, temperature=cfg.kd_temperature,
                      train=budget(cfg.student_steps, cfg.student_lr))
        train_logit_kd(student, policy, kept, kd, desc="5/5 student: logit KD")

    for name, fit in (("student", sequence_kd), ("student_logit_kd", logit_kd)):
        if done(name):
            metrics[name] = json.loads((stages / f"{name}.metrics.json").read_text())
            log(f"{name}: resumed from checkpoint")
        else:
            student = new_student()
            t0 = time.perf_counter()
            fit(student)
            save_checkpoint(stages / f"{name}.pt", student, meta={"stage": name})
            metrics[name] = finish(name, _measure(student, test, time.perf_counter() - t0))
        log(f"{name}: {metrics[name]['params_active']:,} active parameters, held-out accuracy "
            f"{metrics[name]['accuracy']:.3f}")

    # 5. the table and the pictures
    levels = [str(d) for d in cfg.digits]
    rows = {n: {"accuracy": m["accuracy"], "by_difficulty": {d: {"accuracy": a} for d, a in m["by_difficulty"].items()}}
            for n, m in metrics.items()}
    log("\nheld-out accuracy (greedy) by number of digits:")
    log(format_table(rows, levels))
    log(f"\n{'':<18}{'params':>10}{'active':>10}{'accuracy':>10}{'format':>8}{'think len':>11}{'train s':>9}")
    for n, m in metrics.items():
        log(f"{n:<18}{m['params_total']:>10,}{m['params_active']:>10,}{m['accuracy']:>10.3f}{m['format_rate']:>8.3f}"
            f"{m['mean_think_length']:>11.1f}{m['seconds']:>9.0f}")

    hist = {"r1_zero": metrics["r1_zero"]["history"]}
    curve = metrics["base"]["load_curve"]
    classes, share = specialisation(base, [p + c for p, c in kept[:300]], layer=0)
    cols = [f"e{e}" for e in range(share.shape[1])]
    drawn = [
        plots.rl_curves(hist, out / "rl_curves.png"),
        plots.expert_load([s for s, _ in curve], [l for _, l in curve], out / "expert_load.png",
                          "base pretraining: layer 0 expert load"),
        plots.heatmap(share.tolist(), classes, cols, out / "expert_heatmap.png", "layer 0: token class x expert"),
        plots.bars({n: m["accuracy"] for n, m in metrics.items()}, out / "accuracy.png", "held-out accuracy"),
    ]
    pictures = [str(p) for p in drawn if p]
    if pictures:
        log("\npictures: " + ", ".join(pictures))
    else:
        log("\n(matplotlib is not installed: the figures as text)")
        for key in ("reward", "accuracy", "mean_length"):
            log(plots.text_series(hist, key))
        log("base layer-0 expert share per token class:")
        log(plots.text_heatmap(share.tolist(), classes, cols))
    result = {
        "models": {n: {k: m[k] for k in ("params_total", "params_active", "accuracy", "by_difficulty", "format_rate",
                                          "mean_think_length", "seconds")} for n, m in metrics.items()},
        "samples": extra["samples"],
        "config": asdict(cfg),
        "pictures": pictures,
        "seconds_total": time.perf_counter() - t_start,
    }
    return result
