"""What each `toyds` subcommand does: train, solve, experts, pipeline, check (quantize is cli/quantize.py).

Every function takes the parsed flags of cli/main.py, checks the values argparse
cannot (a range, a file that must be a checkpoint, a problem the model's context
must hold) before any work starts, raising a ValueError whose message names the
flag; main() prints it as one line and exits with 2.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import asdict

import torch

from toyds.core.model import GPT, make_config
from toyds.core.sampling import generate
from toyds.core.tokenizer import END_THINK, THINK
from toyds.evaluate.accuracy import evaluate, format_table
from toyds.evaluate.test_time import majority_vote
from toyds.experiment.flags import check_at_least, check_finite
from toyds.experiment.output import check_out_dir, write_metrics
from toyds.experiment.seeds import run_seeds
from toyds.moe.routing import routed_tokens
from toyds.pipeline.config import CLAIMS, QUICK, PipelineConfig, headline, parse_settings
from toyds.pipeline.pipeline import run_seed
from toyds.pipeline.stages import Interrupted, terminate_as_interrupt
from toyds.rl import reward_registry
from toyds.rl.rewards import extract_answer, format_reward
from toyds.tasks.arithmetic import parse_digits, parse_ops
from toyds.tasks.registry import make_task
from toyds.train.checkpoint import check_writable, load_checkpoint, save_checkpoint
from toyds.train.supervised import TrainConfig, train_supervised
from toyds.workshop.checker import list_exercises, run_check


def task_of(args):
    """The task of --task, with --digits and --ops given as text (a task without them refuses them)."""
    options = {}
    if getattr(args, "digits", None) is not None:
        options["digits"] = parse_digits(args.digits)
    if getattr(args, "ops", None) is not None:
        options["ops"] = parse_ops(args.ops)
    return make_task(args.task, **options)


def _too_long(text: str, model) -> ValueError:
    shown = text if len(text) <= 24 else f"{text[:12]}...{text[-8:]}"
    return ValueError(f"PROBLEM {shown} has {len(text)} characters, but this model's context holds "
                      f"{model.cfg.block_size} tokens: a problem may have at most {model.cfg.block_size - 3} "
                      f"characters (<bos>, '=' and one answer token fill the rest)")


def read_problem(task, text: str, model):
    """The problem PROBLEM names, if the model's context can hold it: measured on the text first, so a
    number of thousands of digits gets this sentence, not Python's limit on converting it to an int."""
    if len(text.strip().rstrip("=:").replace(" ", "")) > model.cfg.block_size - 3:
        raise _too_long(text.strip().rstrip("=:").replace(" ", ""), model)
    return task.parse(text)


def _prompt(problem, model, tok) -> list[int]:
    """The prompt's tokens, if the model's context holds them with room for an answer."""
    prompt = tok.encode(problem.prompt())  # <bos>, the problem's characters, "=" or ":"
    if len(prompt) >= model.cfg.block_size:
        raise _too_long(problem.text, model)
    return prompt


def cmd_train(args) -> int:
    task = task_of(args)
    task.check(style=args.corpus)
    for flag, value in [("--steps", args.steps), ("--batch-size", args.batch_size), ("--problems", args.problems)]:
        check_at_least(flag, value)
    check_finite("--lr", args.lr, 0, low_ok=False)
    check_writable(args.out, force=args.force)  # before minutes of training, not after
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    problems = task.sample(args.problems, "train", seed=args.seed)
    model = GPT(make_config(args.preset, ffn=args.ffn)).to(args.device)
    print(f"{args.preset} {args.ffn} model: {model.params_total():,} parameters "
          f"({model.params_active():,} active per token); corpus {args.corpus!r}")
    t0 = time.perf_counter()
    cfg = TrainConfig.recipe(args.steps, args.lr, args.batch_size, args.seed)
    train_supervised(model, task.corpus(problems, args.corpus, seed=args.seed), cfg)
    cells = len(task.levels) * len(getattr(task, "ops", "+"))  # 50 per level (and per operation of arithmetic)
    test = task.sample(50 * cells, "test", unique=True)
    res = evaluate(model, task, test)
    print(f"trained in {time.perf_counter() - t0:.0f}s; held-out greedy accuracy:")
    print(format_table({args.corpus: res}, list(task.levels), unit=task.level_unit))
    save_checkpoint(args.out, model, meta={"task": task.name, "corpus": args.corpus, "accuracy": res["accuracy"]},
                    force=args.force)
    print(f"saved {args.out}")
    return 0


def cmd_solve(args) -> int:
    check_at_least("--samples", args.samples)
    if args.temperature is None:  # one completion: greedy; several: samples at temperature 1
        args.temperature = 0.0 if args.samples == 1 else 1.0
    check_finite("--temperature", args.temperature, 0, low_ok=True)
    torch.set_num_threads(args.threads)
    task = task_of(args)
    model, tok, _ = load_checkpoint(args.model, args.device)
    problem = read_problem(task, args.problem, model)
    prompt = _prompt(problem, model, tok)
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    g = generate(model, [prompt] * args.samples, model.cfg.block_size - len(prompt),
                 temperature=args.temperature, tokenizer=tok, generator=gen)
    for text in g.texts:
        think = text.split(THINK, 1)[1].split(END_THINK, 1)[0] if THINK in text and END_THINK in text else None
        print(f"{problem.prompt()}{text}")
        if think is not None:
            print("  thinking: " + "\n            ".join(think.split(";")))
        print(f"  answer: {extract_answer(text)}  (truth {task.truth(problem)})")
        print(f"  rewards: accuracy {task.accuracy(text, problem):.0f}, format {format_reward(text):.0f}")
    if args.vote:
        answers = [extract_answer(t) for t in g.texts]
        tally = Counter(a if a is not None else "(no answer)" for a in answers)
        chosen = g.texts[majority_vote(answers)]
        print(f"\nvote over {len(answers)} samples: " + ", ".join(f"{a} x{n}" for a, n in tally.most_common()))
        print(f"  majority: {extract_answer(chosen)}  (truth {task.truth(problem)}; "
              f"{'right' if task.accuracy(chosen, problem) else 'wrong'})")
    return 0


def cmd_experts(args) -> int:
    torch.set_num_threads(args.threads)
    task = task_of(args)
    model, tok, _ = load_checkpoint(args.model, args.device)
    problem = read_problem(task, args.problem, model)
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
    task = task_of(args)  # a bad --task, --digits or --ops is named before any work
    reward_registry.resolve(args.reward, task)  # and so is a reward the task does not have
    check_out_dir(args.out)
    torch.set_num_threads(args.threads)
    options = {k: getattr(task, k) for k in ("digits", "ops") if getattr(args, k) is not None}
    cfg = PipelineConfig(**{**(QUICK if args.quick else {}), "task": args.task, "reward": args.reward,
                            "student_method": args.student_method, **options, **parse_settings(args.set)})
    args.config = {k: v for k, v in asdict(cfg).items() if k != "seed"}
    t0 = time.perf_counter()
    terminate_as_interrupt()
    try:
        metrics = run_seeds(run_seed, args, headline(args.config), CLAIMS)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: one line, the stages kept, exit 128 + SIGINT
        said = str(e) if isinstance(e, Interrupted) else (f"interrupted; the finished stages of every seed are kept "
                                                          f"under {args.out}; rerun with --resume to go on")
        print(f"toyds pipeline: {said}", file=sys.stderr)
        return 128 + getattr(e, "signum", 2)  # 130 after Ctrl-C, 143 after SIGTERM
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")
    write_metrics(args.out, metrics)
    return 0


def cmd_check(args) -> int:
    """The workshop's checker (toyds/workshop/checker.py): 0 when every case passes, 1 otherwise."""
    if args.list or args.exercise is None:
        list_exercises()
        return 0 if args.list else 2
    check_finite("--timeout", args.timeout, 0, low_ok=False)
    torch.set_num_threads(args.threads)
    report = run_check(args.exercise, args.file, timeout=args.timeout)  # a hang is stopped with its process
    return 0 if report.passed else 1
