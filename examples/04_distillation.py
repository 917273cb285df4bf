"""Distillation: a small student learns to reason from a larger teacher.

    python examples/04_distillation.py --out runs/04

DeepSeek distilled R1 into small dense models by fine-tuning them on 800k of its
sampled, filtered reasoning traces, and found that this beats running the same RL
on the small model (R1 paper, section 4.1). This example does it at toy scale:

0. A teacher (the `small` preset, 0.86M parameters) is fine-tuned on worked traces
   (about 2.5 minutes), or loaded: --teacher PATH (any toyds checkpoint, e.g.
   runs/03/r1_zero.pt), or DIR/teacher.pt saved by an earlier run with --out DIR.
1. Rejection sampling: the teacher writes --k completions per training problem;
   the rule-based reward keeps the right, well-formed ones (toyds/distill.py).
2. Four students (the `tiny` preset, 0.11M parameters: 1/8 of the teacher's
   active parameters), same initial weights, same number of optimiser steps:
     scratch      SFT on ground-truth answers alone (`<answer>936</answer>`)
     rl           its own R1-Zero: base pretraining on the mixed corpus, then GRPO
                  (--rl-steps more steps on top: RL gets *more* compute here)
     sequence_kd  SFT on the teacher's kept reasoning: only text crosses over
     logit_kd     white-box KD on the same texts: the teacher's next-token
                  distributions (tau = 1) mixed half and half with the next-token
                  loss. Softened at tau = 2 it scored lower (0.74 vs 0.99 for
                  sequence_kd in one run): a confident teacher's distributions over
                  a worked trace are nearly one-hot, so there is little "dark
                  knowledge" to soften, and the softened targets blur the digits.
3. A table of active parameters, held-out accuracy by digits and training seconds,
   and a few completions of each student.
4. Hinton's data-efficiency point: two students see only 5% of the training
   problems (1,000 teacher completions), one learns the hard targets (the text),
   the other the teacher's soft targets (its next-token distributions).

Takes about 5 minutes on 2 laptop CPU cores with a saved teacher, 2.5 more to train
one (the README has the measured runs). With --out DIR: DIR/metrics.json with
"teacher" ({"accuracy", "params_active"}), "students" ({"scratch"|"rl"|
"sequence_kd"|"logit_kd": {"accuracy", "params_active", "seconds", ...}}),
"data_efficiency" ({"soft", "hard"}), DIR/teacher.pt, and DIR/distillation.png
with matplotlib.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from toyds import plots
from toyds.arithmetic import build_corpus, sample_problems
from toyds.checkpoint import load_checkpoint, save_checkpoint
from toyds.distill import KDConfig, train_logit_kd
from toyds.evaluate import evaluate, format_table
from toyds.grpo import GRPOConfig, train_grpo
from toyds.model import GPT, make_config
from toyds.rejection import rejection_sample
from toyds.rewards import R1_REWARDS, R1_WEIGHTS
from toyds.runs import add_common_args, add_problem_args, setup, write_metrics
from toyds.train import TrainConfig, train_supervised


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--teacher", default=None,
                    help="load this teacher checkpoint; by default DIR/teacher.pt from an earlier run, else train one")
    ap.add_argument("--train-teacher", action="store_true", help="train a new teacher even if DIR/teacher.pt exists")
    ap.add_argument("--teacher-preset", default="small", help="teacher size preset (when training one)")
    ap.add_argument("--teacher-steps", type=int, default=500, help="teacher fine-tuning steps on worked traces")
    ap.add_argument("--teacher-lr", type=float, default=3e-3, help="teacher peak learning rate")
    ap.add_argument("--student-preset", default="tiny", help="student size preset")
    ap.add_argument("--steps", type=int, default=700, help="optimiser steps for every student (the budget)")
    ap.add_argument("--rl-steps", type=int, default=60, help="GRPO steps of the rl student, after its pretraining")
    ap.add_argument("--prompts", type=int, default=4000, help="training problems the teacher answers")
    ap.add_argument("--k", type=int, default=1, help="teacher samples per problem for rejection sampling")
    ap.add_argument("--alpha", type=float, default=0.5, help="logit_kd: weight of the KD term vs next-token loss")
    ap.add_argument("--temperature", type=float, default=1.0,
                    help="logit_kd: softening temperature tau (2 scored lower here: see the docstring)")
    ap.add_argument("--kind", default="forward", choices=["forward", "reverse", "jsd"], help="logit_kd divergence")
    ap.add_argument("--on-policy", type=float, default=0.0, help="logit_kd: share of steps on student samples (GKD)")
    ap.add_argument("--lr", type=float, default=1e-2, help="peak learning rate of every student (tiny models like it high)")
    ap.add_argument("--fraction", type=float, default=0.05,
                    help="data-efficiency run: this share of the 20,000 training problems")
    ap.add_argument("--efficiency-steps", type=int, default=300, help="steps of each data-efficiency student")
    ap.add_argument("--efficiency-temperature", type=float, default=1.0, help="tau of the soft-target student")
    ap.add_argument("--eval-per-digit", type=int, default=100, help="held-out problems per digit count")
    ap.add_argument("--show", type=int, default=2, help="completions to print per student")
    add_problem_args(ap)
    add_common_args(ap)
    args = ap.parse_args(argv)
    device = setup(args)
    if not 0 < args.fraction <= 1:
        raise SystemExit(f"--fraction must be in (0, 1], got {args.fraction}")
    digits, ops = args.digits, args.ops
    levels = [str(d) for d in digits]
    t_start = time.perf_counter()
    train_problems = sample_problems(20000, digits=digits, ops=ops, seed=args.seed)
    prompts = sample_problems(args.prompts, digits=digits, ops=ops, seed=args.seed + 1)
    test = sample_problems(args.eval_per_digit * len(digits), digits=digits, ops=ops, split="test", unique=True,
                           allow_fewer=True)  # small cells give what they hold

    def budget(steps=args.steps, lr=args.lr):
        return TrainConfig.recipe(steps, lr, seed=args.seed)

    # 0. the teacher
    t0 = time.perf_counter()
    saved = args.teacher or (args.out / "teacher.pt" if args.out is not None and not args.train_teacher else None)
    trained_teacher = not (saved and Path(saved).is_file())
    if args.teacher and trained_teacher:
        raise SystemExit(f"--teacher {args.teacher}: no such file")
    if not trained_teacher:
        teacher, _, _ = load_checkpoint(saved, device)
        print(f"loaded teacher from {saved} (--train-teacher trains a new one, about 2.5 minutes)")
    else:
        torch.manual_seed(args.seed)
        teacher = GPT(make_config(args.teacher_preset)).to(device)
        train_supervised(teacher, build_corpus(train_problems, "think", seed=args.seed),
                         budget(args.teacher_steps, lr=args.teacher_lr), desc="teacher")
    teacher_seconds = time.perf_counter() - t0
    teacher_res = evaluate(teacher, test)
    results = {"teacher": teacher_res}
    print(f"teacher: {teacher.params_active():,} active parameters, held-out accuracy {teacher_res['accuracy']:.3f} "
          f"({teacher_seconds:.0f}s)")

    # 1. rejection sampling: the teacher writes, the rules filter
    t0 = time.perf_counter()
    kept, stats = rejection_sample(teacher, prompts, args.k, temperature=1.0, seed=args.seed)
    sampling_seconds = time.perf_counter() - t0
    print(f"rejection sampling: kept {stats['kept']}/{stats['samples']} samples ({stats['keep_rate']:.0%}), "
          f"{stats['coverage']:.0%} of problems covered, {sampling_seconds:.0f}s")
    if not kept:
        raise SystemExit("the teacher produced no correct, well-formed completion to distil; train it longer")

    # 2. the students: same initial weights, same steps
    def new_student():
        torch.manual_seed(args.seed)
        return GPT(make_config(args.student_preset)).to(device)

    students, seconds, models = {}, {}, {}

    def run(name, fn):
        t0 = time.perf_counter()
        model = fn()
        seconds[name] = time.perf_counter() - t0
        models[name] = model
        students[name], records = evaluate(model, test, return_records=True)
        results[name] = students[name]
        print(f"  {name:<12} accuracy {students[name]['accuracy']:.3f} in {seconds[name]:.0f}s")
        for r in records[-args.show:]:
            print(f"      {r['problem'].prompt()}{r['completion']}")

    def scratch():
        m = new_student()
        train_supervised(m, build_corpus(train_problems, "direct", seed=args.seed), budget(), desc="scratch")
        return m

    def rl():
        m = new_student()
        train_supervised(m, build_corpus(train_problems, "base", seed=args.seed), budget(), desc="rl: pretrain")
        train_grpo(m, prompts, GRPOConfig(steps=args.rl_steps, seed=args.seed), reward_fns=R1_REWARDS,
                   reward_weights=R1_WEIGHTS, desc="rl: grpo")
        return m

    def sequence_kd():
        m = new_student()
        train_supervised(m, kept, budget(), desc="sequence kd")
        return m

    def logit_kd():
        m = new_student()
        cfg = KDConfig(alpha=args.alpha, temperature=args.temperature, kind=args.kind, on_policy=args.on_policy,
                       train=budget())
        train_logit_kd(m, teacher, kept, cfg, desc="logit kd")
        return m

    print(f"\nstudents ({args.student_preset}, {args.steps} steps each):")
    for name, fn in (("scratch", scratch), ("rl", rl), ("sequence_kd", sequence_kd), ("logit_kd", logit_kd)):
        run(name, fn)

    print("\nheld-out accuracy (greedy) by number of digits:")
    print(format_table(results, levels))
    print(f"\n{'':<14}{'active params':>14}{'train s':>9}")
    print(f"{'teacher':<14}{teacher.params_active():>14,}{teacher_seconds:>9.0f}")
    for name, m in models.items():
        print(f"{name:<14}{m.params_active():>14,}{seconds[name]:>9.0f}")
    best = max(students, key=lambda n: students[n]["accuracy"])
    ratio = students[best]["accuracy"] / max(teacher_res["accuracy"], 1e-9)
    gap = students["sequence_kd"]["accuracy"] - students["rl"]["accuracy"]
    print(f"best student: {best}, {ratio:.2f} of the teacher's accuracy; sequence_kd - rl = {gap:+.3f} "
          "(R1: distilling beats RL on a small model)")

    # 4. data efficiency: the same few examples, hard targets vs soft targets
    few = kept[: max(1, round(args.fraction * len(train_problems)))]
    print(f"\ndata efficiency: {len(few)} teacher completions ({args.fraction:.0%} of the {len(train_problems):,} "
          f"training problems), {args.efficiency_steps} steps each")
    hard = new_student()
    train_supervised(hard, few, budget(args.efficiency_steps), desc="hard targets")
    soft = new_student()
    train_logit_kd(soft, teacher, few, KDConfig(alpha=1.0, temperature=args.efficiency_temperature,
                                                 train=budget(args.efficiency_steps)), desc="soft targets")
    eff = {"hard": evaluate(hard, test)["accuracy"], "soft": evaluate(soft, test)["accuracy"]}
    print(f"  hard targets (the text) {eff['hard']:.3f}  vs  soft targets (teacher distributions, tau="
          f"{args.efficiency_temperature:g}) {eff['soft']:.3f}")

    picture = None
    if args.out is not None:
        if trained_teacher:
            save_checkpoint(args.out / "teacher.pt", teacher, meta={"stage": "teacher"})
        picture = plots.bars({n: r["accuracy"] for n, r in results.items()}, args.out / "distillation.png",
                             "held-out accuracy", "accuracy")
        if picture:
            print(f"picture: {picture}")
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f}s")
    write_metrics(args.out, {
        "teacher": {"accuracy": teacher_res["accuracy"], "params_active": teacher.params_active(),
                    "params_total": teacher.params_total(), "seconds": teacher_seconds, "trained": trained_teacher,
                    "by_difficulty": {d: teacher_res["by_difficulty"][d]["accuracy"] for d in levels}},
        "students": {n: {"accuracy": r["accuracy"], "params_active": models[n].params_active(),
                         "seconds": seconds[n], "by_difficulty": {d: r["by_difficulty"][d]["accuracy"] for d in levels},
                         "format_rate": r["format_rate"]} for n, r in students.items()},
        "rejection_sampling": stats,
        "data_efficiency": {**eff, "pairs": len(few), "fraction": args.fraction},
        "best_student_over_teacher": ratio,
        "sequence_kd_minus_rl": gap,
        "seconds": total,
        "picture": str(picture) if picture else None,
    })
    return results


if __name__ == "__main__":
    main()
