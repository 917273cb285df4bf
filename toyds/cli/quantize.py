"""The `toyds quantize` command: a float32 checkpoint and its int8 copy, measured side by side.

    toyds quantize --model runs/pipeline/stages/student.pt          # the student as int8: size, speed, accuracy

The int8 scheme itself is toyds/efficient/quantize.py; this is the measurement, numbered in
`cmd_quantize`: 1. the file size, both written by save_checkpoint; 2. held-out
greedy accuracy, how often int8 writes exactly the float32 model's completion, and
how far their logits part; 3. decode tokens/s with the KV cache, float32 and int8
alternating, the median of --repeats timings per --batch-sizes entry. It prints one
table, optionally saves the int8 checkpoint (--out) and the figures as JSON
(--metrics). The parser and the one-line errors are the other commands'
(cli/main.py), which calls `cmd_quantize(args)`.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from toyds.core.sampling import generate, left_pad
from toyds.efficient.quantize import is_quantized, quantize_model, weight_bytes
from toyds.evaluate.accuracy import evaluate
from toyds.experiment.flags import check_at_least, whole_numbers
from toyds.experiment.output import write_json
from toyds.tasks.arithmetic import Arithmetic, parse_digits, parse_ops
from toyds.train.checkpoint import check_writable, load_checkpoint, save_checkpoint


def cmd_quantize(args) -> int:
    digits, ops = parse_digits(args.digits), parse_ops(args.ops)
    batch_sizes = whole_numbers("--batch-sizes", "1,64")(args.batch_sizes)
    for flag, value in [("--eval-per-digit", args.eval_per_digit), ("--repeats", args.repeats)]:
        check_at_least(flag, value)
    if args.out is not None:
        check_writable(args.out, force=args.force)
    torch.set_num_threads(args.threads)
    model, tok, _ = load_checkpoint(args.model, args.device)
    if is_quantized(model):
        raise ValueError(f"{args.model} is already an int8 model; give the float32 checkpoint it came from")
    model.eval()
    models = {"float32": model, "int8": quantize_model(model)}
    task = Arithmetic(digits, ops)
    test = task.sample(args.eval_per_digit * len(digits) * len(ops), "test", unique=True)
    prompts = [tok.encode(p.prompt()) for p in test]
    res = {name: {"weight_bytes": weight_bytes(m)} for name, m in models.items()}

    # 1. file size: both written by save_checkpoint, the same way
    with tempfile.TemporaryDirectory() as tmp:
        for name, m in models.items():
            res[name]["file_bytes"] = os.path.getsize(save_checkpoint(Path(tmp) / f"{name}.pt", m))
    # 2. held-out accuracy (greedy), and how often int8 writes exactly the float32 model's completion
    records = {}
    for name, m in models.items():
        summary, records[name] = evaluate(m, task, test, return_records=True)
        res[name]["accuracy"] = summary["accuracy"]
    same = [a["completion"] == b["completion"] for a, b in zip(records["float32"], records["int8"])]
    with torch.no_grad():  # the logits on the float model's own completions
        texts = [tok.encode(p.prompt() + r["completion"])[: model.cfg.block_size]
                 for p, r in zip(test, records["float32"])]
        ids, mask = left_pad(texts, tok.pad_id, args.device)
        diff = (models["float32"](ids, pad_mask=mask) - models["int8"](ids, pad_mask=mask)).abs()[mask]
    # 3. decode tokens/s, greedy with the KV cache; float32 and int8 alternate, median of --repeats
    for bs in batch_sizes:  # at least 16 prompts per timing, in batches of bs
        todo = [prompts[i % len(prompts)] for i in range(max(bs, 16))]
        batches = [todo[i : i + bs] for i in range(0, len(todo), bs)]
        times, tokens = {name: [] for name in models}, {}
        for _ in range(args.repeats):
            for name, m in models.items():
                t0 = time.perf_counter()
                gens = [generate(m, b, model.cfg.block_size - max(map(len, b)), temperature=0, tokenizer=tok)
                        for b in batches]
                times[name].append(time.perf_counter() - t0)
                tokens[name] = sum(int(g.completion_mask.sum()) for g in gens)
        for name in models:
            res[name][f"tokens_per_s_batch_{bs}"] = tokens[name] / statistics.median(times[name])

    f, q = res["float32"], res["int8"]
    print(f"{args.model}: {model.params_total():,} parameters, {len(test)} held-out problems")
    print(f"{'':<26}{'float32':>12}{'int8':>12}{'int8 / float32':>16}")
    rows = [("file size (KB)", "file_bytes", 1 / 1000), ("weights (KB)", "weight_bytes", 1 / 1000)]
    rows += [(f"decode tokens/s, batch {bs}", f"tokens_per_s_batch_{bs}", 1) for bs in batch_sizes]
    rows += [("held-out accuracy", "accuracy", 1)]
    for label, key, unit in rows:
        ratio = q[key] / f[key] if f[key] else float("nan")
        digits_ = 3 if key == "accuracy" else 1
        print(f"{label:<26}{f[key] * unit:>12.{digits_}f}{q[key] * unit:>12.{digits_}f}{ratio:>16.2f}")
    agreement = sum(same) / len(same)
    print(f"int8 writes the float32 model's exact completion for {agreement:.1%} of the problems; "
          f"logits differ by at most {diff.max():.4f} (mean {diff.mean():.5f})")
    metrics = {"float32": f, "int8": q, "same_completion": agreement, "max_abs_logit_diff": float(diff.max()),
               "mean_abs_logit_diff": float(diff.mean()), "problems": len(test), "model": str(args.model)}
    if args.out is not None:
        save_checkpoint(args.out, models["int8"], meta={"quantized_from": str(args.model)}, force=args.force)
        print(f"saved {args.out}")
    if args.metrics is not None:
        print(f"wrote {write_json(args.metrics, metrics)}")
    return 0
