"""The `toyds` command: train a model, watch it solve a problem, look inside.

    toyds train --corpus think --out runs/think.pt     # a tiny GPT on worked traces (~1 min)
    toyds solve "347+589" --model runs/think.pt        # its chain of thought, answer and rewards
    toyds pipeline --out runs/pipeline                 # the whole R1 story (examples/05_pipeline.py)
    toyds experts "347+589" --model runs/pipeline/stages/base.pt   # which experts each token went to
    toyds quantize --model runs/pipeline/stages/student.pt          # the student as int8: size, speed, accuracy
    toyds check --list                                 # the workshop's exercises (workshop/README.md)
    toyds check advantages --file my_advantages.py     # check a participant's exercise

Every subcommand runs on the CPU by default and takes --device. Every flag is checked
before any work starts: a bad one gets one line naming it and its valid range, and
exit code 2. `train` and `quantize` never replace anything at --out but a toyds
checkpoint (or, with --force, a regular file).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from toyds.arithmetic import MIX_PRESETS, OPS, Problem, build_corpus, parse_digits, parse_ops, sample_problems
from toyds.model import PRESETS
from toyds.quantize_cmd import cmd_quantize  # `toyds quantize`'s measurement (its flags are parsed here)
from toyds.runs import check_at_least, check_device, check_finite  # the flag checks: one line naming the flag
from toyds.seeds import add_seed_args
from toyds.tokenizer import END_THINK, THINK


def parse_problem(text: str) -> Problem:
    """'347+589' -> Problem(347, '+', 589). Raises ValueError naming what is wrong."""
    s = text.strip().rstrip("=").replace(" ", "").replace("*", "x")
    for op in OPS:
        left, sep, right = s.partition(op)
        if sep and left.isdigit() and right.isdigit() and left.isascii() and right.isascii():
            return Problem(int(left), op, int(right), len(left))
    raise ValueError(f"cannot read {text!r} as a problem; write two whole numbers and one of {OPS}, e.g. '347+589'")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, mps)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch")


def _prompt(problem: Problem, model, tok) -> list[int]:
    """The prompt's tokens, if the model's context holds them with room for an answer."""
    prompt = tok.encode(problem.prompt())  # <bos>, the problem's characters, "="
    if len(prompt) >= model.cfg.block_size:
        text = problem.text if len(problem.text) <= 24 else f"{problem.text[:12]}...{problem.text[-8:]}"
        raise ValueError(
            f"PROBLEM {text} has {len(problem.text)} characters, but this model's context holds "
            f"{model.cfg.block_size} tokens: a problem may have at most {model.cfg.block_size - 3} characters "
            f"(<bos>, '=' and one answer token fill the rest)"
        )
    return prompt


def cmd_train(args) -> int:
    from toyds.checkpoint import check_writable, save_checkpoint
    from toyds.evaluate import evaluate, format_table
    from toyds.model import GPT, make_config
    from toyds.train import TrainConfig, train_supervised

    digits, ops = parse_digits(args.digits), parse_ops(args.ops)  # the one syntax (toyds/arithmetic.py)
    for flag, value in [("--steps", args.steps), ("--batch-size", args.batch_size), ("--problems", args.problems)]:
        check_at_least(flag, value)
    check_finite("--lr", args.lr, 0, low_ok=False)
    check_writable(args.out, force=args.force)  # before minutes of training, not after
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    problems = sample_problems(args.problems, digits=digits, ops=ops, seed=args.seed)
    model = GPT(make_config(args.preset, ffn=args.ffn)).to(args.device)
    print(f"{args.preset} {args.ffn} model: {model.params_total():,} parameters "
          f"({model.params_active():,} active per token); corpus {args.corpus!r}")
    t0 = time.perf_counter()
    cfg = TrainConfig.recipe(args.steps, args.lr, args.batch_size, args.seed)
    train_supervised(model, build_corpus(problems, args.corpus, seed=args.seed), cfg)
    test = sample_problems(50 * len(digits) * len(ops), digits=digits, ops=ops, split="test", unique=True,
                           allow_fewer=True)  # 1-digit cells hold fewer than 50
    res = evaluate(model, test)
    print(f"trained in {time.perf_counter() - t0:.0f}s; held-out greedy accuracy:")
    print(format_table({args.corpus: res}, [str(d) for d in digits]))
    save_checkpoint(args.out, model, meta={"corpus": args.corpus, "accuracy": res["accuracy"]}, force=args.force)
    print(f"saved {args.out}")
    return 0


def cmd_solve(args) -> int:
    from toyds.checkpoint import load_checkpoint
    from toyds.rewards import accuracy_reward, extract_answer, format_reward
    from toyds.sampling import generate

    check_finite("--temperature", args.temperature, 0, low_ok=True)
    check_at_least("--samples", args.samples)
    torch.set_num_threads(args.threads)
    problem = parse_problem(args.problem)
    model, tok, _ = load_checkpoint(args.model, args.device)
    prompt = _prompt(problem, model, tok)
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    g = generate(model, [prompt] * args.samples, model.cfg.block_size - len(prompt),
                 temperature=args.temperature, tokenizer=tok, generator=gen)
    for text in g.texts:
        think = text.split(THINK, 1)[1].split(END_THINK, 1)[0] if THINK in text and END_THINK in text else None
        print(f"{problem.prompt()}{text}")
        if think is not None:
            print("  thinking: " + "\n            ".join(think.split(";")))
        print(f"  answer: {extract_answer(text)}  (truth {problem.answer})")
        print(f"  rewards: accuracy {accuracy_reward(text, problem.answer):.0f}, format {format_reward(text):.0f}")
    return 0


def cmd_experts(args) -> int:
    from toyds.checkpoint import load_checkpoint
    from toyds.routing import routed_tokens
    from toyds.sampling import generate

    torch.set_num_threads(args.threads)
    problem = parse_problem(args.problem)
    model, tok, _ = load_checkpoint(args.model, args.device)
    if not model.moe_layers():
        raise ValueError(f"{args.model} is a dense model (ffn='dense'): it has no experts to show")
    prompt = _prompt(problem, model, tok)
    g = generate(model, [prompt], model.cfg.block_size - len(prompt), temperature=0.0, tokenizer=tok)
    text = problem.prompt() + g.texts[0]
    classes, per_layer = routed_tokens(model, [text])
    E = model.moe_layers()[0].cfg.n_experts
    print(f"{text}\n")
    print(f"{'token':<10}{'class':<14}" + "".join(f"layer {i:<6}" for i in range(len(per_layer))))
    for t, (ids, cls) in enumerate(zip(tok.encode(text), classes[0])):
        chosen = "".join(f"{','.join(f'e{e}' for e in layer[t].tolist()):<12}" for layer in per_layer)
        print(f"{tok.vocab[ids]:<10}{cls:<14}{chosen}")
    for i, layer in enumerate(per_layer):
        load = torch.bincount(layer.flatten(), minlength=E).tolist()
        print(f"layer {i} load over this text: " + " ".join(f"e{e}:{n}" for e, n in enumerate(load)))
    return 0


def cmd_pipeline(args) -> int:
    from dataclasses import asdict

    from toyds.pipeline import CLAIMS, QUICK, PipelineConfig, headline, run_seed
    from toyds.runs import check_out_dir, write_metrics
    from toyds.seeds import run_seeds

    check_out_dir(args.out)
    torch.set_num_threads(args.threads)
    args.config = {k: v for k, v in asdict(PipelineConfig(**(QUICK if args.quick else {}))).items() if k != "seed"}
    t0 = time.perf_counter()
    metrics = run_seeds(run_seed, args, headline(args.config), CLAIMS)
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")
    write_metrics(args.out, metrics)
    return 0



def cmd_check(args) -> int:
    """The workshop's checker (toyds/workshop.py): 0 when every case passes, 1 otherwise."""
    import os

    from toyds.workshop import list_exercises, run_check

    if args.list or args.exercise is None:
        list_exercises()
        return 0 if args.list else 2
    check_finite("--timeout", args.timeout, 0, low_ok=False)
    torch.set_num_threads(args.threads)
    report = run_check(args.exercise, args.file, timeout=args.timeout)
    if report.timed_out:  # the participant's code is still running in a thread Python cannot stop
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    return 0 if report.passed else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="toyds", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = sub.add_parser("train", help="train a tiny GPT on an arithmetic corpus and save it", formatter_class=fmt)
    p.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    p.add_argument("--corpus", default="think", choices=sorted(MIX_PRESETS), help="completion style mix")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model size")
    p.add_argument("--ffn", default="dense", choices=["dense", "moe"], help="feed-forward: dense SwiGLU or MoE")
    p.add_argument("--steps", type=int, default=700, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per step")
    p.add_argument("--lr", type=float, default=1e-2, help="peak learning rate (tiny models like it high)")
    p.add_argument("--digits", default="1,2,3", help="difficulty levels: digits per operand, comma-separated")
    p.add_argument("--ops", default="+", help="operations from + - x, comma-separated, e.g. +,-,x")
    p.add_argument("--problems", type=int, default=20000, help="training problems to draw")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--force", action="store_true",
                   help="let --out replace a regular file that is not a checkpoint (never a folder, link or device)")
    _common(p)
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("solve", help="show a model's chain of thought, answer and rewards", formatter_class=fmt)
    p.add_argument("problem", help="a problem such as 347+589, 902-45 or 347x8")
    p.add_argument("--model", type=Path, required=True, help="checkpoint to load")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; > 0 samples")
    p.add_argument("--samples", type=int, default=1, help="completions to draw")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    _common(p)
    p.set_defaults(fn=cmd_solve)

    p = sub.add_parser("experts", help="show which experts each token of a solution went to (MoE models)",
                       formatter_class=fmt)
    p.add_argument("problem", help="a problem such as 347+589")
    p.add_argument("--model", type=Path, required=True, help="checkpoint of an MoE model (e.g. runs/pipeline/stages/base.pt)")
    _common(p)
    p.set_defaults(fn=cmd_experts)

    p = sub.add_parser("quantize", help="int8 copy of a model: file size, decode speed and accuracy vs float32",
                       formatter_class=fmt)
    p.add_argument("--model", type=Path, required=True, help="float32 checkpoint to quantise (e.g. a student)")
    p.add_argument("--out", type=Path, default=None, help="write the int8 checkpoint here; without it, only measure")
    p.add_argument("--metrics", type=Path, default=None, help="write the figures as JSON to this file")
    p.add_argument("--digits", default="1,2,3", help="held-out problems: digits per operand, comma-separated")
    p.add_argument("--ops", default="+", help="held-out problems: operations from + - x, comma-separated")
    p.add_argument("--eval-per-digit", type=int, default=100, help="held-out problems per digit count and operation")
    p.add_argument("--batch-sizes", default="1,64", help="prompts decoded together in the speed timings")
    p.add_argument("--repeats", type=int, default=3, help="timings per batch size and model (the median is shown)")
    p.add_argument("--force", action="store_true",
                   help="let --out replace a regular file that is not a checkpoint (never a folder, link or device)")
    _common(p)
    p.set_defaults(fn=cmd_quantize)

    p = sub.add_parser("pipeline", help="the whole R1 story: MoE base, R1-Zero, rejection sampling, distillation",
                       formatter_class=fmt)
    p.add_argument("--out", type=Path, default=Path("runs/pipeline"), help="directory for stages, metrics, pictures")
    p.add_argument("--quick", action="store_true", help="a small run (under 2 minutes) that still runs every stage")
    p.add_argument("--resume", action="store_true", help="skip stages already finished in --out (if their settings match)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    _common(p)
    add_seed_args(p)
    p.set_defaults(fn=cmd_pipeline)

    p = sub.add_parser("check", help="check a workshop exercise: toyds check NAME [--file PATH], or --list",
                       formatter_class=fmt)
    p.add_argument("exercise", nargs="?", help="the exercise, e.g. advantages (toyds check --list names them all)")
    p.add_argument("--file", type=Path, default=None,
                   help="your Python file (default: the stub workshop/exercises/EXERCISE.py)")
    p.add_argument("--list", action="store_true", help="list the exercises and the toyds function each mirrors")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds a case may run before it counts as a hang")
    _common(p)
    p.set_defaults(fn=cmd_check, threads=1)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_at_least("--threads", args.threads)
        check_device(args.device)  # the examples' check: "not usable here", never "corrupt checkpoint"
        return args.fn(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"toyds {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
