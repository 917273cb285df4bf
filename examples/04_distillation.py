"""Chapter 4, distillation: a small student learns to reason from a larger teacher.

    python examples/04_distillation.py --out runs/04 --seeds 3           # the README's table
    python examples/04_distillation.py --out runs/04-gkd --seeds 3 --gkd # + on-policy students, curves

DeepSeek distilled R1 into small dense models by fine-tuning them on its sampled,
filtered reasoning, and found that this beats running the same RL on the small
model (R1 paper, section 4.1). Here, once per seed:

0. A teacher (the `small` preset, 0.86M parameters), fine-tuned on worked traces with
   Muon once per run before the seeds start (or --teacher PATH, any toyds checkpoint).
1. Rejection sampling: the teacher writes --k completions per training problem; the
   rules keep the right, well-formed ones, one copy of each (toyds/distill/rejection.py).
2. Students of the `tiny` preset (1/8 of the teacher's active parameters), all from one
   *student base* pretrained briefly (500 steps: it executes few 3-digit traces when made
   to think): rl (its own R1-Zero), sequence_kd (SFT on the kept text), logit_kd (the
   teacher's distributions too); --scratch: SFT on answers from random weights; --gkd:
   on_policy (GKD: the student writes, the teacher grades every token; distill/on_policy.py)
   and off_then_on (sequence KD, then on-policy at --continue-lr, as Qwen3 did), at ~equal time,
   with every student's held-out curve against steps and seconds.
3. A table of active parameters, held-out accuracy by digits and training seconds.
4. Hinton's data-efficiency point: the same few texts as hard targets vs soft targets.

Claims, per seed: the best student reaches >= 0.95 of its teacher's accuracy with <= 1/4
of its active parameters; sequence KD beats the student's own R1-Zero by >= 0.2. Time on
2 cores: README chapter 4; what was tried: docs/lab/04_distillation.md.

With --out DIR: DIR/metrics.json with "teacher", "student_base", "students" ({name: {"accuracy",
"params_active", "seconds", "by_difficulty", ...}}), "data_efficiency", "seeds", "summary",
"claims", with --gkd "on_policy" and "curves"; DIR/teacher.pt, distillation(_curves).png.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch

from toyds.core.model import GPT, PRESETS, make_config
from toyds.distill.kd import KDConfig, train_logit_kd
from toyds.distill.losses import kind_of_trl_beta
from toyds.distill.rejection import rejection_sample
from toyds.evaluate.accuracy import evaluate, format_table
from toyds.experiment import plots
from toyds.experiment.flags import HelpFormatter, add_common_args, at_least, number
from toyds.experiment.output import setup, write_metrics
from toyds.experiment.seeds import Claim, run_seeds
from toyds.rl.grpo import GRPOConfig, train_grpo
from toyds.rl.reward_registry import add_reward_arg, resolve
from toyds.tasks.arithmetic import Arithmetic
from toyds.tasks.base import WEIGHTINGS, level_weights
from toyds.tasks.registry import add_arithmetic_args
from toyds.train.checkpoint import load_checkpoint, save_checkpoint
from toyds.train.supervised import TrainConfig, train_supervised
from toyds.train.trainer import OPTIMIZERS

STUDENTS = ("scratch", "rl", "sequence_kd", "logit_kd", "on_policy", "off_then_on")  # scratch: --scratch; the last two: --gkd


def student_names(args) -> tuple[str, ...]:
    return (("scratch",) if args.scratch else ()) + STUDENTS[1:4] + (STUDENTS[4:] if args.gkd else ())


def headline(args) -> list[str]:
    hardest = levels_of(args)[-1]
    return ["teacher.accuracy", "student_base.forced_think.accuracy", *(f"students.{s}.accuracy" for s in
            student_names(args)), *(f"students.{s}.by_difficulty.{hardest}" for s in student_names(args)),
            *(f"students.{s}.seconds" for s in student_names(args)), "best_student_over_teacher",
            "sequence_kd_minus_rl", "data_efficiency.hard", "data_efficiency.soft",
            *(f"on_policy.{n}.minus_sequence_kd_hardest" for n in (STUDENTS[4:] if args.gkd else ()))]
CLAIMS = [
    Claim("the best student reaches >= 0.95 of its teacher's accuracy", "best_student_over_teacher", ">=", 0.95),
    Claim("... with <= 1/4 of the teacher's active parameters", "student_over_teacher_params", "<=", 0.25),
    Claim("sequence KD beats the student's own R1-Zero by >= 0.2", "sequence_kd_minus_rl", ">=", 0.2),
]


def budget(args, seed, steps=None, lr=None, optimizer=None) -> TrainConfig:
    return TrainConfig.recipe(steps or args.steps, lr or args.lr, seed=seed, optimizer=optimizer or args.optimizer)


def corpus_problems(args, task, seed) -> list:
    """The problems the teacher and the student base are pretrained on (--problems, --level-weighting)."""
    return task.sample_weighted(args.problems, "train", seed, level_weights(args.level_weighting, task))


def train_teacher(args):
    """0. the teacher, fine-tuned on worked traces once per run (first seed, every thread), then shared by all seeds."""
    seed = args.seeds[0]
    torch.manual_seed(seed)
    teacher = GPT(make_config(args.teacher_preset)).to(args.device)
    task = Arithmetic(args.digits, args.ops)
    train_supervised(teacher, task.corpus(corpus_problems(args, task, seed), "think", seed=seed),
                     budget(args, seed, args.teacher_steps, args.teacher_lr, args.teacher_optimizer), desc="teacher")
    return teacher


def levels_of(args) -> list[str]:
    return list(Arithmetic(args.digits, args.ops).levels)


def get_teacher(args, seed):
    """The teacher for one seed's students: the shared one main() trained, or --teacher PATH."""
    teacher, _, _ = load_checkpoint(args.teacher, args.device)
    return teacher


def new_student(args, seed, base: GPT | None = None) -> GPT:
    """A student of --student-preset: the seed's initial weights, or a copy of the student base's."""
    torch.manual_seed(seed)
    m = GPT(make_config(args.student_preset)).to(args.device)
    if base is not None:
        m.load_state_dict(base.state_dict())
    return m


class Curve:
    """Greedy accuracy on a probe set while a student trains, against its steps and its training
    seconds (the probe's own time left out): fit's step_callback and eval_fn at once."""

    def __init__(self, task, probe, every: int):
        self.task, self.probe, self.every, self.points = task, probe, every, []
        self.offset, self.step, self.eval_seconds, self.t0 = 0, 0, 0.0, time.perf_counter()

    def phase(self, steps_before: int) -> None:  # off_then_on: the second phase's steps follow the first's
        self.offset = steps_before

    def __call__(self, step: int, model) -> None:
        self.step = self.offset + step + 1

    def probe_now(self, model) -> dict:
        t = time.perf_counter()
        r = evaluate(model, self.task, self.probe)
        self.eval_seconds += time.perf_counter() - t
        self.points.append({"step": self.step, "seconds": time.perf_counter() - self.t0 - self.eval_seconds,
                            "accuracy": r["accuracy"],
                            "by_difficulty": {lv: v["accuracy"] for lv, v in r["by_difficulty"].items()}})
        return {"probe_accuracy": r["accuracy"]}


def gkd_config(args, seed, steps: int, cap: int, lr: float | None = None) -> KDConfig:
    """On-policy distillation (GKD's lmbda = 1): every batch is the student's own samples, graded by the
    teacher at every token; --on-policy-beta as TRL reads it (1: reverse KL, DistillationTrainer's default)."""
    b = args.on_policy_beta
    kind = kind_of_trl_beta(b)
    return KDConfig(alpha=1.0, kind=kind, beta=b if kind == "jsd" else 0.5, on_policy=1.0,
                    on_policy_loss=args.on_policy_loss, max_new_tokens=cap,
                    sample_temperature=args.on_policy_sample_temperature, train=budget(args, seed, steps, lr))


def students(args, seed, task, train_problems, prompts, teacher, kept, cap: int,
             probe=None) -> tuple[dict, GPT, float, dict]:
    """2. the students, all of one size. rl, sequence_kd and logit_kd start from the same pretrained
    base, as R1's distilled and RL'd models started from one base (Qwen2.5-32B in section 4.1);
    scratch (only with --scratch) starts from random weights. Returns {name: (model, seconds)}, the
    base and its seconds, and each student's curve on `probe` (with --curve-points); cap is the rl and
    on-policy students' completion cap (Task.completion_cap)."""
    t0 = time.perf_counter()
    base = new_student(args, seed)
    train_supervised(base, task.corpus(train_problems, "base", seed=seed),
                     budget(args, seed, args.base_steps, optimizer="adamw"), desc="student base")
    base_seconds = time.perf_counter() - t0

    def every(cfg):  # the probe's interval for a run of cfg.steps steps
        return dataclasses.replace(cfg, eval_every=max(cfg.steps // args.curve_points, 1)) if probe else cfg

    def scratch(m, c):
        train_supervised(m, task.corpus(train_problems, "direct", seed=seed), every(budget(args, seed)),
                         desc="scratch", **c)

    def rl(m, c):
        fns, weights = resolve(args.reward, task)
        cfg = GRPOConfig(steps=args.rl_steps, lr=args.rl_lr, beta=args.rl_beta, max_new_tokens=cap, seed=seed)
        train_grpo(m, prompts, every(cfg), reward_fns=fns, reward_weights=weights, desc="rl: grpo", **c)

    def sequence_kd(m, c, steps=None):
        train_supervised(m, kept, every(budget(args, seed, steps)), desc="sequence kd", **c)

    def logit_kd(m, c):
        cfg = KDConfig(alpha=args.alpha, temperature=args.temperature, kind=args.kind, on_policy=args.on_policy,
                       train=every(budget(args, seed)))
        train_logit_kd(m, teacher, kept, cfg, desc="logit kd", **c)

    def on_policy(m, c, steps=None, lr=None):
        cfg = gkd_config(args, seed, steps or args.on_policy_steps, cap, lr)
        train_logit_kd(m, teacher, kept, dataclasses.replace(cfg, train=every(cfg.train)), desc="on-policy kd", **c)

    def off_then_on(m, c):  # Qwen3's order: sequence KD first, then on-policy, continued at a lower rate
        first = args.steps // 2
        sequence_kd(m, c, first)
        if c:
            c["step_callback"].phase(first)
        on_policy(m, c, args.on_policy_steps // 2, args.continue_lr)

    fits = dict(zip(STUDENTS, (scratch, rl, sequence_kd, logit_kd, on_policy, off_then_on)))
    out, curves = {}, {}
    for name in student_names(args):
        m = new_student(args, seed, None if name == "scratch" else base)
        curve = Curve(task, probe, args.curve_points) if probe else None
        t0 = time.perf_counter()
        fits[name](m, dict(eval_fn=curve.probe_now, step_callback=curve) if curve else {})
        # seconds: this student's own training; the shared base's is counted once, in "base_seconds"
        out[name] = (m, time.perf_counter() - t0 - (curve.eval_seconds if curve else 0.0))
        if curve:
            curves[name] = curve.points
    return out, base, base_seconds, curves


def data_efficiency(args, seed, teacher, base, kept) -> tuple[dict, int]:
    """4. the same few teacher completions: hard targets (the text) vs soft targets (its distributions),
    each student starting from the student base, as the others do."""
    few = kept[: args.few]
    scores = {}
    for name in ("hard", "soft"):
        m = new_student(args, seed, base)
        cfg = budget(args, seed, args.efficiency_steps)
        if name == "hard":
            train_supervised(m, few, cfg, desc="hard targets")
        else:
            train_logit_kd(m, teacher, few, KDConfig(alpha=1.0, temperature=args.efficiency_temperature, train=cfg),
                           desc="soft targets")
        scores[name] = m
    return scores, len(few)


def run(args, seed: int) -> dict:
    t_start = time.perf_counter()
    task = Arithmetic(args.digits, args.ops)
    levels = list(task.levels)
    train_problems = corpus_problems(args, task, seed)
    prompts = task.sample_weighted(args.prompts, "train", seed + 1, level_weights(args.level_weighting, task))
    test = task.sample(args.eval_per_digit * len(levels), "test", unique=True)  # small cells give what they hold
    teacher = get_teacher(args, seed)
    results = {"teacher": evaluate(teacher, task, test)}
    print(f"seed {seed}: teacher {teacher.params_active():,} active parameters, held-out accuracy "
          f"{results['teacher']['accuracy']:.3f}")

    # 1. rejection sampling: the teacher writes, the rules filter
    cap = task.completion_cap()  # samples and rollouts stop where the longest right answer would
    kept, stats = rejection_sample(teacher, task, prompts, args.k, temperature=1.0, seed=seed, dedupe=True,
                                   max_new_tokens=cap)
    print(f"seed {seed}: rejection sampling kept {stats['kept']}/{stats['samples']} samples ({stats['keep_rate']:.0%}), "
          f"{stats['coverage']:.0%} of problems covered")
    if not kept:
        raise RuntimeError(f"seed {seed}: the teacher produced no correct, well-formed completion to distil; train it longer")

    # 2-3. the students, and their table
    probe = [p for lv in levels for p in [q for q in test if task.level(q) == lv][:args.probe_per_digit]]
    trained_students, base, base_seconds, curves = students(args, seed, task, train_problems, prompts, teacher, kept,
                                                            cap, probe if args.curve_points else None)
    # what RL can select: the student base made to open with <think> (R1-Zero's premise, chapter 3)
    base_greedy, base_forced = evaluate(base, task, test), evaluate(base, task, test, prefix="<think>")
    print(f"seed {seed}: the student base, greedy {base_greedy['accuracy']:.3f}; forced to open with <think> "
          f"{base_forced['accuracy']:.3f} (3 digits {base_forced['by_difficulty'][levels[-1]]['accuracy']:.3f})")
    for name, (m, secs) in trained_students.items():
        results[name], records = evaluate(m, task, test, return_records=True)
        print(f"  {name:<12} accuracy {results[name]['accuracy']:.3f} in {secs:.0f}s")
        for r in records[-args.show:]:
            print(f"      {r['problem'].prompt()}{r['completion']}")
    print(f"\nseed {seed}: held-out accuracy (greedy) by number of digits:")
    print(format_table(results, levels))
    acc = {n: results[n]["accuracy"] for n in student_names(args)}
    best = max(acc, key=acc.get)
    ratio = acc[best] / max(results["teacher"]["accuracy"], 1e-9)
    student_params = trained_students[best][0].params_active()
    print(f"best student: {best}, {ratio:.2f} of the teacher's accuracy with {student_params / teacher.params_active():.2f} "
          f"of its active parameters; sequence_kd - rl = {acc['sequence_kd'] - acc['rl']:+.3f}")

    # 4. data efficiency
    eff_models, n_few = data_efficiency(args, seed, teacher, base, kept)
    eff = {n: evaluate(m, task, test)["accuracy"] for n, m in eff_models.items()}
    print(f"data efficiency ({n_few} teacher completions): hard targets {eff['hard']:.3f} vs soft targets "
          f"(tau={args.efficiency_temperature:g}) {eff['soft']:.3f}")

    picture = None
    if args.out is not None and seed == args.seeds[0]:
        picture = plots.bars({n: r["accuracy"] for n, r in results.items()}, args.out / "distillation.png",
                             "held-out accuracy", "accuracy")
    by_digit = lambda r: {d: r["by_difficulty"][d]["accuracy"] for d in levels}
    return {
        "teacher": {"accuracy": results["teacher"]["accuracy"], "params_active": teacher.params_active(),
                    "params_total": teacher.params_total(), "seconds": args.teacher_seconds, "trained": args.teacher_trained,
                    "by_difficulty": by_digit(results["teacher"])},
        "students": {n: {"accuracy": results[n]["accuracy"], "params_active": m.params_active(), "seconds": secs,
                         "by_difficulty": by_digit(results[n]), "format_rate": results[n]["format_rate"]}
                     for n, (m, secs) in trained_students.items()},
        "student_base": {"steps": args.base_steps, "seconds": base_seconds, "accuracy": base_greedy["accuracy"],
                         "forced_think": {"accuracy": base_forced["accuracy"], "by_difficulty": by_digit(base_forced)}},
        "rejection_sampling": stats,
        "data_efficiency": {**eff, "pairs": n_few},
        "best_student": best, "best_student_over_teacher": ratio,
        "student_over_teacher_params": student_params / teacher.params_active(),
        "sequence_kd_minus_rl": acc["sequence_kd"] - acc["rl"],
        "seconds": time.perf_counter() - t_start, "picture": str(picture) if picture else None,
        **({"curves": curves} if curves else {}),
        **({"on_policy": {n: {"accuracy": results[n]["accuracy"], "by_difficulty": by_digit(results[n]),
                              "seconds": trained_students[n][1], "curve": curves.get(n),
                              # what it recovers over sequence KD on the hardest level, and its price per step
                              "minus_sequence_kd_hardest": (results[n]["by_difficulty"][levels[-1]]["accuracy"]
                                                            - results["sequence_kd"]["by_difficulty"][levels[-1]]["accuracy"]),
                              "seconds_per_step": trained_students[n][1] / steps}
                          for n, steps in (("on_policy", args.on_policy_steps),
                                           ("off_then_on", args.steps // 2 + args.on_policy_steps // 2))}}
           if args.gkd else {}),
    }


def curve_picture(args, metrics: dict):
    """--gkd: every student's probe accuracy against its steps and its training seconds (mean +- std over
    seeds), all levels and then each level, with the teacher's accuracy dashed."""
    runs = metrics["seeds"]
    levels = list(runs[0]["teacher"]["by_difficulty"])

    def line(name, x, level):
        pts = list(zip(*(r["curves"][name] for r in runs)))  # per probe: the seeds' points
        pick = (lambda p: p["accuracy"]) if level is None else (lambda p: p["by_difficulty"][level])
        acc = [[pick(p) for p in pt] for pt in pts]
        return {"x": [statistics.mean(p[x] for p in pt) for pt in pts], "accuracy": [statistics.mean(a) for a in acc],
                "std": [statistics.stdev(a) if len(a) > 1 else 0.0 for a in acc]}

    def teacher(level):
        return {"teacher": statistics.mean(r["teacher"]["accuracy"] if level is None else r["teacher"]["by_difficulty"]
                                           [level] for r in runs)}

    rows = [(f"{'all levels' if lv is None else f'{lv} digits'}", "student steps / training seconds",
             {f"against {x}": {n: line(n, x, lv) for n in runs[0]["curves"]} for x in ("step", "seconds")}, teacher(lv))
            for lv in [None, *levels]]
    return plots.selection_curves(rows, args.out / "distillation_curves.png", log_x=False)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--teacher", default=None, help="load this teacher checkpoint instead of training one")
    ap.add_argument("--teacher-preset", default="small", choices=sorted(PRESETS), help="teacher size preset")
    ap.add_argument("--teacher-steps", type=at_least(1), default=400, help="teacher fine-tuning steps on worked traces")
    ap.add_argument("--teacher-lr", type=number(0, 1, low_open=True), default=3e-3, help="teacher peak learning rate")
    ap.add_argument("--student-preset", default="tiny", choices=sorted(PRESETS), help="student size preset")
    ap.add_argument("--base-steps", type=at_least(1), default=500,
                    help="pretraining steps of the student base that rl, sequence_kd and logit_kd start from (a small "
                         "model early in pretraining: it executes few 3-digit traces, so RL has little to select)")
    ap.add_argument("--steps", type=at_least(1), default=500, help="optimiser steps of every student after the base")
    ap.add_argument("--rl-steps", type=at_least(1), default=60, help="GRPO steps of the rl student, after pretraining")
    ap.add_argument("--rl-lr", type=number(0, 1, low_open=True), default=1e-4, help="GRPO learning rate of the rl student")
    ap.add_argument("--rl-beta", type=number(0), default=0.05, help="KL weight of the rl student to the student base")
    ap.add_argument("--problems", type=at_least(1), default=6000,
                    help="training problems the teacher and the student base are pretrained on")
    ap.add_argument("--level-weighting", default="harder", choices=WEIGHTINGS,
                    help="how those problems and the teacher's prompts visit the levels: harder = level i of n, i "
                         "times per cycle; even = in turn")
    ap.add_argument("--prompts", type=at_least(1), default=4000, help="training problems the teacher answers")
    ap.add_argument("--k", type=at_least(1), default=1, help="teacher samples per problem for rejection sampling")
    ap.add_argument("--alpha", type=number(0, 1), default=0.5, help="logit_kd: weight of the KD term vs next-token loss")
    ap.add_argument("--temperature", type=number(0, low_open=True), default=1.0,
                    help="logit_kd: softening temperature tau (2 scored lower here: see the docstring)")
    ap.add_argument("--kind", default="forward", choices=["forward", "reverse", "jsd"], help="logit_kd divergence")
    ap.add_argument("--on-policy", type=number(0, 1), default=0.0, help="logit_kd: share of steps on student samples (GKD)")
    ap.add_argument("--lr", type=number(0, 1, low_open=True), default=1e-2,
                    help="peak learning rate of every student (tiny models like it high)")
    ap.add_argument("--optimizer", default="muon_attention", choices=OPTIMIZERS,
                    help="the students' optimiser after the base; muon_attention: Muon for attention's matrices, "
                         "AdamW for the rest (train/trainer.py)")
    ap.add_argument("--teacher-optimizer", default="muon", choices=OPTIMIZERS,
                    help="the teacher's optimiser (muon: Muon for every hidden matrix; a teacher only has to be right)")
    ap.add_argument("--few", type=at_least(1), default=1000,
                    help="data-efficiency run: the first this many kept teacher completions")
    ap.add_argument("--efficiency-steps", type=at_least(1), default=150,
                    help="steps of each data-efficiency student (from the student base)")
    ap.add_argument("--scratch", action=argparse.BooleanOptionalAction, default=False,
                    help="also train the scratch student: SFT on direct answers from random weights (chapter 0's "
                         "lesson again; off by default for the time budget)")
    ap.add_argument("--efficiency-temperature", type=number(0, low_open=True), default=1.0,
                    help="tau of the soft-target student")
    ap.add_argument("--gkd", action="store_true",
                    help="also train the on-policy students (on_policy; off_then_on, as Qwen3 did) and draw every "
                         "student's curve (--curve-points)")
    ap.add_argument("--on-policy-steps", type=at_least(1), default=170,
                    help="steps of the on_policy student (each samples and runs the teacher: about the wall time of "
                         "--steps off-policy steps); off_then_on takes half of --steps, then half of these")
    ap.add_argument("--on-policy-beta", type=number(0, 1), default=1.0,
                    help="on-policy divergence, TRL's beta: 0 forward KL, 1 reverse KL (DistillationTrainer's default)")
    ap.add_argument("--continue-lr", type=number(0, 1, low_open=True), default=1e-3,
                    help="off_then_on: peak lr of its on-policy phase (at --lr's 1e-2 it undid the converged student)")
    ap.add_argument("--on-policy-sample-temperature", type=number(0), default=1.0,
                    help="temperature of the on-policy students' own samples (0: greedy)")
    ap.add_argument("--on-policy-loss", default="divergence", choices=("divergence", "sampled_token"),
                    help="on-policy loss: over the teacher's whole distribution, or the sampled token's log-ratio as a "
                         "reward (policy gradient)")
    ap.add_argument("--curve-points", type=at_least(0), default=None,
                    help="probes of held-out accuracy per student while it trains (default: 5 with --gkd, else 0)")
    ap.add_argument("--probe-per-digit", type=at_least(1), default=30, help="held-out problems per digit in a probe")
    ap.add_argument("--eval-per-digit", type=at_least(1), default=100, help="held-out problems per digit count")
    ap.add_argument("--show", type=at_least(0), default=2, help="completions to print per student")
    add_arithmetic_args(ap)
    add_reward_arg(ap)
    add_common_args(ap)
    args = ap.parse_args(argv)
    if args.teacher:
        if not Path(args.teacher).is_file():
            ap.error(f"argument --teacher: no such file: {args.teacher}")
        try:
            load_checkpoint(args.teacher, "cpu")  # a bad teacher is named now, not after minutes of work
        except ValueError as e:
            ap.error(f"argument --teacher: {e}")
    try:
        resolve(args.reward, Arithmetic(args.digits, args.ops))  # a reward the task lacks is named before any work
    except ValueError as e:
        ap.error(str(e))
    if args.curve_points is None:
        args.curve_points = 5 if args.gkd else 0
    if args.on_policy and args.alpha == 0:
        ap.error("argument --on-policy: on-policy steps learn only from the KD term, so they need --alpha > 0")
    setup(args, checkpoints=("teacher.pt",))
    with tempfile.TemporaryDirectory() as tmp:
        args.teacher_trained, args.teacher_seconds = args.teacher is None, 0.0
        if args.teacher is None:  # train it once, here, then every seed's process loads it
            t0 = time.perf_counter()
            teacher = train_teacher(args)
            args.teacher_seconds = time.perf_counter() - t0
            path = args.out / "teacher.pt" if args.out is not None else Path(tmp) / "teacher.pt"
            args.teacher = str(save_checkpoint(path, teacher, meta={"stage": "teacher", "seed": args.seeds[0]}))
            print(f"teacher: {teacher.params_active():,} active parameters, {args.teacher_steps} steps in "
                  f"{args.teacher_seconds:.0f}s, saved to {args.teacher}")
        metrics = run_seeds(run, args, headline(args), CLAIMS)
    d = metrics["summary"]
    hard, soft = d["data_efficiency.hard"], d["data_efficiency.soft"]
    overlap = abs(hard["mean"] - soft["mean"]) <= hard["std"] + soft["std"]
    print(f"\nsoft vs hard targets on {args.few} teacher completions: hard {hard['mean']:.3f} +- {hard['std']:.3f}, "
          f"soft {soft['mean']:.3f} +- {soft['std']:.3f}"
          + (": the spreads overlap, so no claim either way" if overlap else ""))
    metrics["soft_vs_hard_overlap"] = overlap
    if args.gkd:
        print("\non-policy distillation, held-out accuracy (3 digits), training seconds, per seed:")
        for name in ("sequence_kd", "logit_kd", "on_policy", "off_then_on"):
            row = [(r["students"][name]["accuracy"], r["students"][name]["by_difficulty"][levels_of(args)[-1]],
                    r["students"][name]["seconds"]) for r in metrics["seeds"]]
            print(f"  {name:<12} " + "   ".join(f"{a:.3f} ({h:.3f}) {t:4.0f}s" for a, h, t in row))
        if args.out is not None:
            metrics["curve_picture"] = str(curve_picture(args, metrics))
    write_metrics(args.out, metrics)
    return metrics


if __name__ == "__main__":
    main()
