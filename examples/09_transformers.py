"""Chapter 9, the real ecosystem: the pipeline's models as transformers models, and TRL training one.

    python examples/09_transformers.py --out runs/09                              # trains the pipeline first (~5 min)
    python examples/09_transformers.py --stages runs/pipeline/stages --out runs/09   # its saved models (~1 min)

1. The pipeline's R1-Zero model (an MoE with V3's gate) and its dense student are
   exported (toyds/export/: DeepseekV3 or Glm4Moe for the MoE, Llama for the student)
   into DIR/hf/NAME, a folder transformers loads offline.
2. transformers loads each with AutoModelForCausalLM and AutoTokenizer: the largest
   logit difference from toyds on held-out prompts (a padded batch), greedy
   model.generate against toyds's greedy decoding (the share of identical
   completions), and held-out accuracy of transformers' own generations, scored by
   toyds's rules.
3. TRL's own GRPOTrainer trains the exported student for --trl-steps steps on CPU,
   offline, with toyds's reward functions (R1's accuracy:1,format:0.5, TRL-style
   batched forms); the trained folder comes back with `toyds import` and is scored
   by toyds's evaluation.

Needs the `hf` extra (pip install -e ".[hf]": transformers, safetensors, tokenizers,
and TRL). Nothing is downloaded. Claims: logits within 1e-4, greedy identical on every
prompt. With --out DIR: DIR/metrics.json with "export" ({model: {"target",
"max_abs_logit_diff", "greedy_identical", "hf_accuracy", "toyds_accuracy"}}), "trl"
({"steps", "history", "accuracy_before", "accuracy_after", "seconds"}), "seconds".
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from toyds.core.sampling import generate, left_pad
from toyds.core.tokenizer import Tokenizer
from toyds.evaluate.accuracy import evaluate
from toyds.experiment.flags import HelpFormatter, add_common_args, at_least
from toyds.experiment.output import setup, write_metrics
from toyds.experiment.seeds import Claim, judge, report
from toyds.export.hf import export_model, import_model
from toyds.export.mapping import TARGETS, target
from toyds.pipeline.config import QUICK, PipelineConfig
from toyds.pipeline.pipeline import run_pipeline
from toyds.rl.reward_registry import R1, resolve
from toyds.tasks.arithmetic import Arithmetic
from toyds.train.checkpoint import load_checkpoint

CLAIMS = [Claim(f"{m}: transformers' logits within 1e-4 of toyds's", f"export.{m}.max_abs_logit_diff", "<=", 1e-4)
          for m in ("r1_zero", "student")] + \
         [Claim(f"{m}: greedy model.generate gives toyds's tokens on every prompt", f"export.{m}.greedy_identical",
                ">=", 1.0) for m in ("r1_zero", "student")]


def stages(args) -> Path:
    """The pipeline's stages folder: --stages, or a pipeline trained now (--quick: its small settings)."""
    if args.stages is not None:
        return args.stages
    out = Path(tempfile.mkdtemp(prefix="toyds-09-"))
    print(f"no --stages given: training the pipeline into {out} first")
    run_pipeline(out, PipelineConfig(**(QUICK if args.quick else {}), seed=args.seed), device=args.device)
    return out / "stages"


def until_eos(row, tok) -> list[int]:
    """A completion's tokens up to and including its first <eos> (what follows is padding)."""
    row = row.tolist()
    return row[: row.index(tok.eos_id) + 1] if tok.eos_id in row else row


def compare(name: str, checkpoint: Path, folder: Path, test, args) -> dict:
    """2. one exported model in transformers against the same model in toyds."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    task, tok = Arithmetic(), Tokenizer()
    model, _, _ = load_checkpoint(checkpoint)
    hf = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    hf_tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    prompts = [p.prompt() for p in test]
    ids, mask = left_pad([tok.encode(p) for p in prompts], tok.pad_id, "cpu")
    with torch.no_grad():
        diff = (model.eval()(ids, pad_mask=mask) - hf(input_ids=ids, attention_mask=mask.long()).logits).abs()[mask]
    n_new = args.max_new_tokens
    enc = hf_tok(prompts, return_tensors="pt", padding=True)
    out = hf.generate(**enc, max_new_tokens=n_new)[:, enc["input_ids"].shape[1]:]
    ref = generate(model, [tok.encode(p) for p in prompts], n_new, temperature=0.0).completions
    texts = hf_tok.batch_decode(out, skip_special_tokens=False)
    same = [until_eos(a, tok) == until_eos(b, tok) for a, b in zip(out, ref)]
    hf_acc = sum(task.accuracy(t.replace("<pad>", ""), p) for t, p in zip(texts, test)) / len(test)
    row = {"target": TARGETS[target(model.cfg)], "max_abs_logit_diff": float(diff.max()),
           "greedy_identical": sum(same) / len(same), "hf_accuracy": hf_acc,
           "toyds_accuracy": evaluate(model, task, test, max_new_tokens=n_new)["accuracy"]}
    print(f"{name}: {row['target']}, largest logit difference {row['max_abs_logit_diff']:.2e}, greedy identical on "
          f"{sum(same)}/{len(same)} prompts; held-out accuracy transformers {hf_acc:.3f}, toyds "
          f"{row['toyds_accuracy']:.3f}")
    print(f"  transformers wrote: {prompts[-1]}{texts[-1].replace('<pad>', '')}")
    return row


def trl_run(folder: Path, out: Path, test, args) -> dict:
    """3. TRL's GRPOTrainer on the exported student, with toyds's rule-based rewards."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    task = Arithmetic()
    fns, weights = resolve(R1, task)
    data = Dataset.from_list([{"prompt": p.prompt(), "answer": p.answer} for p in task.sample(400, "rl", args.seed)])
    config = GRPOConfig(output_dir=str(out / "trl"), per_device_train_batch_size=16, num_generations=8,
                        max_completion_length=args.max_new_tokens, max_steps=args.trl_steps,
                        learning_rate=args.trl_lr, logging_steps=1, report_to="none", use_cpu=True,
                        save_strategy="no", reward_weights=weights, seed=args.seed)
    t0 = time.perf_counter()
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(folder, local_files_only=True),
                          reward_funcs=fns, args=config, train_dataset=data,
                          processing_class=AutoTokenizer.from_pretrained(folder, local_files_only=True))
    trainer.train()
    seconds = time.perf_counter() - t0
    trainer.save_model(str(out / "trl" / "final"))
    keys = ("step", "loss", "reward", "rewards/accuracy_reward_batch/mean", "rewards/format_reward_batch/mean")
    history = [{k: h[k] for k in keys if k in h} for h in trainer.state.log_history if "reward" in h]
    for h in history:
        print("  TRL " + ", ".join(f"{k} {v:.3g}" for k, v in h.items()))
    before = evaluate(import_model(folder), task, test, max_new_tokens=args.max_new_tokens)["accuracy"]
    after = evaluate(import_model(out / "trl" / "final"), task, test, max_new_tokens=args.max_new_tokens)["accuracy"]
    print(f"TRL GRPO, {args.trl_steps} steps in {seconds:.0f}s: held-out accuracy (toyds's evaluation of the folder "
          f"TRL saved, imported back) {before:.3f} -> {after:.3f}")
    return {"steps": args.trl_steps, "history": history, "accuracy_before": before, "accuracy_after": after,
            "seconds": seconds, "config": {"loss_type": config.loss_type, "beta": config.beta,
                                           "learning_rate": config.learning_rate}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--stages", type=Path, default=None, help="a pipeline's stages folder (default: train one now)")
    ap.add_argument("--quick", action="store_true", help="when training the pipeline here, its small settings")
    ap.add_argument("--eval-per-level", type=at_least(1), default=40, help="held-out problems per digit count")
    ap.add_argument("--max-new-tokens", type=at_least(1), default=49, help="longest completion")
    ap.add_argument("--trl-steps", type=at_least(1), default=10, help="TRL GRPO steps on the exported student")
    ap.add_argument("--trl-lr", type=float, default=5e-6, help="TRL's learning rate (its default is 1e-6)")
    add_common_args(ap, seeds=None)
    args = ap.parse_args(argv)
    if args.stages is not None and not all((args.stages / f"{m}.pt").is_file() for m in ("r1_zero", "student")):
        ap.error(f"argument --stages: {args.stages} holds no r1_zero.pt and student.pt (run `toyds pipeline` first)")
    device = setup(args)
    if device.type != "cpu":
        ap.error("argument --device: this chapter compares against transformers on the CPU")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: the folders are local
    t0 = time.perf_counter()
    folder = stages(args)
    out = args.out or Path(tempfile.mkdtemp(prefix="toyds-09-out-"))
    test = Arithmetic().sample(args.eval_per_level * 3, "test", unique=True)
    metrics = {"export": {}}
    for name in ("r1_zero", "student"):
        hf_dir = export_model(folder / f"{name}.pt", out / "hf" / name)
        metrics["export"][name] = compare(name, folder / f"{name}.pt", hf_dir, test, args)
    metrics["trl"] = trl_run(out / "hf" / "student", out, test, args)
    metrics["claims"] = judge([metrics], CLAIMS)
    report([args.seed], {}, metrics["claims"])
    metrics["seconds"] = time.perf_counter() - t0
    write_metrics(args.out, metrics)
    return metrics


if __name__ == "__main__":
    main()
