"""End-to-end: every example and benchmark runs in a quick setting and writes the
metrics.json keys its issue names. Slow (they train), so marked; CI still runs them."""

import argparse
import importlib.util
import itertools
import json
import math
from pathlib import Path

import pytest

from toyds.tasks.countdown import Countdown, family, sample_problems, split_of
from toyds.tasks.registry import make_task

ROOT = Path(__file__).resolve().parents[1]


def load_script(rel: str):
    spec = importlib.util.spec_from_file_location(Path(rel).stem.replace("-", "_"), ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_script(rel: str, argv: list[str]):
    return load_script(rel).main(argv)


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_00_arithmetic(tmp_path):
    run_script("examples/00_arithmetic.py", ["--preset", "tiny", "--steps", "40", "--direct-steps", "40", "--digits", "1,2,3",
                                            "--eval-per-digit", "6", "--threads", "1", "--seeds", "2", "--jobs", "1",
                                            "--out", str(tmp_path)])
    m = metrics(tmp_path)
    assert [s["accuracy"]["think"].keys() for s in m["seeds"]] == [m["accuracy"]["think"].keys()] * 2
    assert set(m["summary"]["accuracy.think.3"]) >= {"mean", "std", "min", "max"}
    assert {c["of"] for c in m["claims"].values()} == {2} and (tmp_path / "seed-1" / "think.pt").is_file()
    assert set(m["accuracy"]) == {"direct", "think"}
    for style in ("direct", "think"):
        assert set(m["accuracy"][style]) == {"1", "2", "3"}
        assert all(0.0 <= a <= 1.0 for a in m["accuracy"][style].values())
    assert m["seconds"] > 0 and (tmp_path / "think.pt").is_file()


@pytest.mark.slow
def test_bench_core(tmp_path):
    run_script("examples/benchmarks/bench_core.py", ["--preset", "tiny", "--batch", "8", "--new-tokens", "16",
                                                     "--repeats", "1", "--train-steps", "1", "--pack-steps", "2", "--threads", "1",
                                                     "--converge-steps", "20", "--out", str(tmp_path)])
    m = metrics(tmp_path)
    assert m["kv_cache_speedup"] > 0
    assert set(m["train_tokens_per_s"]) == {"toyds", "reference"}
    # mfu > 0 only: on a shared machine the matmul rate and the training rate are timed at different
    # moments, so their ratio is not bounded by 1 (a timing, not a behaviour; bench_core reports it)
    assert set(m["real_tokens_per_s"]) == {"packed", "padded"} and m["mfu"] > 0
    assert m["real_share"]["packed"] > m["real_share"]["padded"]  # packing computes fewer padded positions
    # 20 steps cannot reach 0.95 on 3-digit sums: both recipes report None, not a made-up step
    assert m["steps_to_095"] == {"muon_attention": [None], "adamw": [None]} and m["mfu_adamw"] > 0


def test_02_rewards(tmp_path):
    rows = run_script("examples/02_rewards.py", ["--threads", "1", "--out", str(tmp_path)])
    m = metrics(tmp_path)
    assert len(m["rows"]) == len(rows) >= 10
    assert all({"completion", "answer", "accuracy", "format"} <= set(r) for r in m["rows"])
    assert {r["accuracy"] for r in m["rows"]} == {0.0, 1.0} and {r["format"] for r in m["rows"]} == {0.0, 1.0}
    hacks = [r for r in m["rows"] if r["hack"]]
    assert hacks and all(r[r["hack"]] == 0.0 for r in hacks)  # no hack collects the reward it games
    assert all(r["rules"] <= r["anywhere"] for r in m["lenient"]) and m["lenient"][0]["rules"] == 1.0
    assert sum(r["rules"] for r in m["lenient"]) == 1.0 < sum(r["float"] for r in m["lenient"])


@pytest.mark.slow
def test_06_distributed(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "examples/06_distributed.py"), "--tokens", "128", "--repeats", "2", "--steps", "4",
           "--batch-size", "8", "--seeds", "2", "--out", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    m = metrics(tmp_path)
    assert m["world_size"] == 2 and len(m["tokens_sent"]) == 2 and len(m["tokens_received"]) == 2
    assert sum(m["tokens_sent"]) == sum(m["tokens_received"]) == 128 * 2  # every copy of every token, once
    for key in ("ep_max_abs_diff", "ep_grad_max_abs_diff", "ddp_max_param_diff"):
        assert 0.0 <= m[key] <= 1e-5, (key, m[key])
    assert 0.0 < m["exchange_time_share"] < 1.0
    assert len(m["seeds"]) == 2 and all(c["held"] == c["of"] == 2 for c in m["claims"].values())


def test_06_relaunch_keeps_nproc_from_torchrun():
    mod = load_script("examples/06_distributed.py")
    rest = ["--tokens", "128", "--out", "x"]
    for nproc in (["--nproc", "2"], ["--nproc=2"], ["--np", "3"], ["--npr=3"]):
        assert mod.without_nproc([*nproc, *rest]) == rest
        assert mod.without_nproc([*rest, *nproc]) == rest


@pytest.mark.slow
def test_06_distributed_started_with_python_and_nproc(tmp_path):
    # plain `python examples/06_distributed.py --nproc 2`: it relaunches itself through torchrun,
    # which once rejected the forwarded --nproc as an ambiguous prefix of --nproc-per-node
    import subprocess
    import sys

    cmd = [sys.executable, str(ROOT / "examples/06_distributed.py"), "--nproc", "2", "--tokens", "128",
           "--repeats", "2", "--steps", "4", "--batch-size", "8", "--out", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert metrics(tmp_path)["world_size"] == 2


@pytest.mark.slow
def test_01_moe(tmp_path):
    run_script("examples/01_moe.py", ["--steps", "12", "--balance-steps", "12", "--seeds", "2", "--batch-size", "16", "--val-problems", "60",
                                      "--jobs", "1", "--threads", "1", "--out", str(tmp_path)])
    m = metrics(tmp_path)
    for name in ("dense", "moe"):
        assert {"val_loss", "params_total", "params_active"} <= set(m[name])
    assert len(m["seeds"]) == 2 and {"moe_minus_dense_mean", "pooled_std", "held"} <= set(m["across_seeds"])
    assert set(m["claims"]) == {c.name for c in load_script("examples/01_moe.py").CLAIMS}
    # equal active parameters (the gate adds a few), more in total
    assert abs(m["moe"]["params_active"] - m["dense"]["params_active"]) / m["dense"]["params_active"] < 0.02
    assert m["moe"]["params_total"] > 2 * m["dense"]["params_total"]
    assert set(m["balancing"]) == {"none", "aux_loss", "seq_aux", "bias", "bias+seq_aux"}  # every rule, and V3's
    assert m["balancing"]["bias"] == m["moe"]  # at equal budgets the table's bias row is the headline run
    for row in m["balancing"].values():
        assert row["max_load_ratio"] >= 1.0 and row["dead_experts"] >= 0 and row["val_loss"] > 0
    share = m["specialisation"]["share"]
    assert all(abs(sum(r) - 1) < 1e-4 for r in share)


@pytest.mark.slow
def test_bench_moe(tmp_path):
    run_script("examples/benchmarks/bench_moe.py", ["--tokens", "64,256", "--scaling-experts", "4,8", "--iters", "1",
                                                    "--repeats", "1", "--dim", "32", "--expert-dim", "32",
                                                    "--threads", "1", "--out", str(tmp_path)])
    m = metrics(tmp_path)
    for key in ("moe_over_dense", "loop_over_dense", "sorted_over_dense", "grouped_mm_over_dense"):
        assert set(m[key]) == {"64", "256"} and all(r > 0 for r in m[key].values())
    assert set(m["experts_scaling"]) == {"4", "8"} and m["experts_scaling_ratio"] > 0


@pytest.mark.slow
def test_03_r1_zero(tmp_path):
    run_script("examples/03_r1_zero.py", ["--preset", "tiny", "--pretrain-steps", "40", "--grpo-steps", "3",
                                          "--rm-grpo-steps", "2", "--prompts", "4", "--group", "4",
                                          "--eval-per-level", "8", "--samples", "2", "--pass-k", "2",
                                          "--rm-prompts", "20", "--rm-steps", "5", "--max-new-tokens", "40",
                                          "--rm-dim", "16", "--threads", "1", "--out", str(tmp_path)])
    m = metrics(tmp_path)
    for when in ("before", "after"):
        assert {"accuracy", "format_rate", "think_rate", "mean_length"} <= set(m[when])
        assert 0 <= m[when]["accuracy"] <= 1
    assert set(m["by_difficulty"]) == {"1", "2", "3"}
    assert [r["step"] for r in m["history"]] == [1, 2, 3]
    assert {"step", "reward", "accuracy", "format_rate", "mean_length"} <= set(m["history"][0])
    assert {"proxy_reward", "true_accuracy"} <= set(m["learned_rm"])
    assert 0 <= m["base_forced_think"]["accuracy"] <= 1
    assert m["pass_at_k"]["k"] == 2 and m["pass_at_k"]["before"] >= 0
    assert (tmp_path / "r1_zero.pt").is_file()
    assert len(m["claims"]) == 5 and all(c["of"] == 1 for c in m["claims"].values())  # the R1-Zero and learned-RM claims


@pytest.mark.slow
def test_04_distillation(tmp_path):
    run_script("examples/04_distillation.py", ["--teacher-preset", "tiny", "--teacher-steps", "150", "--teacher-lr",
                                               "1e-2", "--base-steps", "20", "--steps", "20", "--rl-steps", "2", "--prompts", "40",
                                               "--eval-per-digit", "8", "--few", "20", "--digits", "1",
                                               "--efficiency-steps", "10", "--threads", "1", "--seeds", "2", "--jobs", "1",
                                               "--out", str(tmp_path)])
    m = metrics(tmp_path)
    assert {"accuracy", "params_active"} <= set(m["teacher"])
    # one teacher, trained once before the seeds, taught both seeds' students
    assert m["seeds"][0]["teacher"] == m["seeds"][1]["teacher"] and m["teacher"]["seconds"] > 0
    assert set(m["students"]) == {"rl", "sequence_kd", "logit_kd"}  # scratch is opt-in (--scratch)
    assert not any("scratch" in path for path in m["summary"])
    for s in m["students"].values():
        assert {"accuracy", "params_active", "seconds"} <= set(s) and 0 <= s["accuracy"] <= 1
    assert set(m["data_efficiency"]) >= {"soft", "hard"}
    assert m["student_base"]["steps"] == 20 and m["student_base"]["seconds"] > 0  # rl and both KD students start here
    assert 0 <= m["student_base"]["forced_think"]["accuracy"] <= 1 and m["data_efficiency"]["pairs"] <= 20
    assert (tmp_path / "teacher.pt").is_file() and m["teacher"]["trained"]
    assert set(m["claims"]) == {c.name for c in load_script("examples/04_distillation.py").CLAIMS}
    # --scratch adds the student trained on direct answers from random weights; --teacher skips the teacher
    run_script("examples/04_distillation.py", ["--teacher", str(tmp_path / "teacher.pt"), "--scratch", "--base-steps", "20",
                                               "--steps", "20", "--rl-steps", "2", "--prompts", "40", "--eval-per-digit", "8",
                                               "--few", "20", "--digits", "1", "--efficiency-steps", "10", "--threads",
                                               "1", "--out", str(tmp_path / "scratch")])
    m = metrics(tmp_path / "scratch")
    assert set(m["students"]) == {"scratch", "rl", "sequence_kd", "logit_kd"} and not m["teacher"]["trained"]
    assert "students.scratch.accuracy" in m["summary"]


@pytest.mark.slow
def test_05_pipeline_quick_and_resume(tmp_path, capsys):
    first = run_script("examples/05_pipeline.py", ["--quick", "--threads", "2", "--out", str(tmp_path)])
    m = metrics(tmp_path)
    assert {"base", "r1_zero", "student"} <= set(m["models"])
    for row in m["models"].values():
        assert {"params_total", "params_active", "accuracy", "format_rate", "mean_think_length", "seconds"} <= set(row)
    assert m["models"]["base"]["params_active"] < m["models"]["base"]["params_total"]  # a sparse MoE
    assert m["models"]["student"]["params_active"] == m["models"]["student"]["params_total"]  # dense
    assert m["seconds_total"] > 0 and set(m["claims"]) and m["summary"]["student_over_r1_zero"]["values"]
    # --resume: every stage is finished, so nothing is trained again and the figures are the same
    capsys.readouterr()
    again = run_script("examples/05_pipeline.py", ["--quick", "--resume", "--threads", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert all(f"{stage}: resumed" in out for stage in ("base", "r1_zero", "samples", "student"))
    assert "student_logit_kd" not in m["models"]  # opt-in: --logit-kd
    assert {n: r["accuracy"] for n, r in again["models"].items()} == {n: r["accuracy"] for n, r in first["models"].items()}


# ------------------------------------------- bad arguments, named before any work


@pytest.mark.parametrize("script, argv, says", [
    ("examples/03_r1_zero.py", ["--group", "1"], "argument --group: must be an integer >= 2, got '1'"),
    ("examples/03_r1_zero.py", ["--lr", "nan"], "argument --lr: must be a finite number in (0, 1], got 'nan'"),
    ("examples/03_r1_zero.py", ["--eval-per-level", "0"], "argument --eval-per-level: must be an integer >= 1"),
    ("examples/04_distillation.py", ["--alpha", "2"], "argument --alpha: must be a finite number in [0, 1], got '2'"),
    ("examples/04_distillation.py", ["--student-preset", "huge"], "argument --student-preset: invalid choice: 'huge'"),
    ("examples/07_aha.py", ["--reward", "accuracy:1,length:inf"], "the weight of 'length' must be a finite number, got 'inf'"),
    ("examples/07_aha.py", ["--reward", "accuracy:1,price:0.1"], "unknown reward 'price' for task 'countdown'"),
    ("examples/07_aha.py", ["--compare-problems", "382"],
     "argument --compare-problems: must be an integer from 1 to 381, got '382'"),  # not clipped to 381
    ("examples/07_aha.py", ["--beyond-problems", "-1"], "argument --beyond-problems: must be an integer from 0 to 407"),
    ("examples/10_grpo_family.py", ["--task", "countdown", "--eval-per-level", "60"],
     "could not find 180 distinct test problems at levels ('1', '2', '3+') (--eval-per-level 60"),
    ("examples/03_r1_zero.py", ["--task", "countdown", "--ops", "x"], "--ops is an option of the arithmetic tasks"),
    ("examples/05_pipeline.py", ["--kd-alpha", "2"], "argument --kd-alpha: must be a finite number in [0, 1]"),
    ("examples/00_arithmetic.py", ["--seeds", "0"], "--seeds '0': run at least one seed"),
    ("examples/01_moe.py", ["--aux-loss-alpha", "inf"], "argument --aux-loss-alpha: must be a finite number"),
    ("examples/00_arithmetic.py", ["--threads", "0"], "argument --threads: must be an integer >= 1, got '0'"),
    ("examples/08_mla.py", ["--steps", "0"], "argument --steps: must be an integer >= 1, got '0'"),
    ("examples/08_mla.py", ["--deep-extra", "-1"], "argument --deep-extra: must be an integer >= 0, got '-1'"),
    ("examples/08_mla.py", ["--lr", "nan"], "argument --lr: must be a finite number in (0, 1], got 'nan'"),
    ("examples/08_mla.py", ["--contexts", "128,0"], "--contexts '128,0': give whole numbers >= 1, comma-separated"),
    ("examples/benchmarks/bench_moe.py", ["--tokens", "512,x"], "--tokens '512,x': give whole numbers >= 1"),
    ("examples/benchmarks/bench_moe.py", ["--iters", "0"], "argument --iters: must be an integer >= 1, got '0'"),
])
def test_bad_example_arguments_are_named_before_any_work(script, argv, says, capsys, monkeypatch):
    import toyds.pipeline.pipeline
    import toyds.train.pretrain
    import toyds.train.supervised

    # every module that imported train_supervised by name is patched too: one first imported under the
    # patch would otherwise keep the failing stand-in for the tests after this one
    for module in (toyds.train.supervised, toyds.train.pretrain, toyds.pipeline.pipeline):
        monkeypatch.setattr(module, "train_supervised", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit):
        run_script(script, argv)
    assert says in capsys.readouterr().err


def test_an_unusable_out_is_named_before_any_work(tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(SystemExit, match=r"--out .*afile is not a directory"):
        run_script("examples/00_arithmetic.py", ["--out", str(tmp_path / "afile")])
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "think.pt").write_text("my notes, not a checkpoint")
    with pytest.raises(SystemExit, match=r"refusing to overwrite .*think.pt: it is a regular file but not a toyds"):
        run_script("examples/00_arithmetic.py", ["--out", str(tmp_path / "d")])
    assert (tmp_path / "d" / "think.pt").read_text() == "my notes, not a checkpoint"


@pytest.mark.slow
def test_08_mla(tmp_path):
    run_script("examples/08_mla.py", ["--steps", "12", "--problems", "300", "--eval-per-digit", "2", "--digits", "1,2",
                                     "--mtp-prompts", "2", "--mtp-repeats", "1", "--deep-extra", "1",
                                     "--contexts", "8,24", "--decode-batch", "2", "--decode-steps", "2",
                                     "--repeats", "1", "--threads", "1", "--out", str(tmp_path)])
    m = metrics(tmp_path)
    q = m["quality"]
    for name in ("mha", "mla"):
        assert q[name]["val_loss"] > 0 and 0 <= q[name]["accuracy"] <= 1
    assert abs(q["mla"]["params"] / q["mha"]["params"] - 1) < 0.1  # about the same parameter count
    assert q["loss_gap"] == pytest.approx(q["mla"]["val_loss"] - q["mha"]["val_loss"])
    # measured from the cache tensors, and equal to V2 Table 1 (float32 bytes)
    assert set(m["cache_bytes_per_token"]) == {"mha", "mla_naive", "mla_absorb"}
    assert m["cache_bytes_per_token"] == m["cache_bytes_formula"]
    assert m["cache_bytes_per_token"]["mha"] == 2 * 4 * 16 * 4 and m["cache_bytes_per_token"]["mla_absorb"] == (32 + 16) * 4
    assert set(m["decode"]) == {"8", "24"}
    assert all(set(row) == {"mha", "mla_naive", "mla_absorb"} and min(row.values()) > 0 for row in m["decode"].values())
    assert m["decode_memory"]["24"]["mha"]["cache_mb"] > m["decode_memory"]["24"]["mla_absorb"]["cache_mb"]
    mtp = m["mtp"]
    assert len(mtp["acceptance"]) == 1 and 0 <= mtp["acceptance"][0] <= 1 and mtp["speedup"] > 0
    assert len(mtp["loss_main_with_vs_without_mtp"]) == 2 and mtp["loss_main_with_vs_without_mtp"][1] == q["mla"]["val_loss"]
    # speculative decoding reproduced greedy; the pass-through blocks changed no token
    assert mtp["identical"] == 1.0 and mtp["deep"]["identical"] == 1.0
    assert mtp["deep"]["acceptance"] == mtp["acceptance"] and mtp["deep"]["tokens"] == mtp["tokens"]
    assert m["seconds"] > 0 and set(m["claims"]) and m["summary"]


@pytest.mark.slow
def test_07_aha_quick(tmp_path):
    run_script("examples/07_aha.py", ["--quick", "--threads", "1", "--seeds", "2", "--jobs", "1", "--eval-every", "2",
                                      "--out", str(tmp_path)])
    m = metrics(tmp_path)
    keys = {"accuracy", "verify_rate", "backtrack_rate", "mean_tries", "mean_length", "verify_precision",
            "verify_recall", "first_try_accuracy", "by_difficulty"}
    for when in ("before", "after", "before_sampled", "after_sampled"):
        assert keys <= set(m[when]) and set(m[when]["by_difficulty"]) <= {"1", "2", "3+"}
        assert keys - {"by_difficulty"} <= set(next(iter(m[when]["by_difficulty"].values())))
    assert len(m["history"]) == 3 and {"reward", "accuracy", "verify_rate", "mean_length"} <= set(m["history"][0])
    assert set(m["contrast"]["check_rate"]) == {"before", "after"} and set(m["contrast"]["accuracy"]) == {"before", "after"}
    assert isinstance(m["seconds"], float) and len(m["seeds"]) == 2
    assert {c["of"] for c in m["claims"].values()} == {2} and "greedy accuracy gain >= 0.1" in m["claims"]
    rows = [json.loads(line) for line in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 12 and {"prompt", "numbers", "target", "before", "after", "seed"} <= set(rows[0])
    assert "completions" not in m and all("completions" not in s for s in m["seeds"])
    # the contrast ran in a process of its own (the default): run in this one, seed 0's figures are the same
    run_script("examples/07_aha.py", ["--quick", "--threads", "1", "--no-alongside", "--out", str(tmp_path / "inline")])
    inline, alongside = metrics(tmp_path / "inline")["contrast"], m["seeds"][0]["contrast"]
    for key in ("check_rate", "accuracy", "greedy", "sampled", "history"):
        assert inline[key] == alongside[key], key
    # --eval-every 2 measured greedy at steps 2 and 3 (the last) and changed nothing in the run it watched
    seed0, plain = m["seeds"][0], metrics(tmp_path / "inline")
    assert [h["step"] for h in seed0["history"] if "eval_accuracy" in h] == [2, 3]
    assert all("eval_accuracy" not in h for h in plain["history"])
    assert [{k: v for k, v in h.items() if not k.startswith("eval_")} for h in seed0["history"]] == plain["history"]
    assert seed0["after"] == plain["after"] and seed0["history"][-1]["eval_accuracy"] == plain["after"]["accuracy"]


@pytest.mark.slow
def test_07_mixed_policy_and_the_price_by_difficulty(tmp_path):
    run_script("examples/07_aha.py", ["--quick", "--threads", "1", "--mixed", "--reward", "accuracy:1,format:0.5,alp:0.003",
                                      "--out", str(tmp_path)])
    m = metrics(tmp_path)
    seed = m["seeds"][0]
    # one policy on both tasks: each task's check rate and accuracy, greedy and sampled, before and after
    for how in ("greedy", "sampled"):
        assert set(seed["mixed"][how]) == {"countdown", "addcheck"}
        for rates in seed["mixed"][how].values():
            assert set(rates["check_rate"]) == {"before", "after"} and 0 <= rates["accuracy"]["after"] <= 1
    assert "contrast" not in seed and "one policy: greedy check rate on addition <= 0.1" in m["claims"]
    assert {"step", "reward", "countdown_check_rate", "addcheck_check_rate"} <= set(seed["mixed"]["history"][0])
    # alp in --reward adds the claims about where the search goes, read from "by_difficulty"
    levels = seed["by_difficulty"]
    for lv, v in levels.items():
        assert v["verify_rate"]["after"] == seed["after"]["by_difficulty"][lv]["verify_rate"]
    if {"1", "3+"} <= set(levels):
        assert seed["length_plenty_over_scarce"] == pytest.approx(
            levels["3+"]["mean_length"]["after"] / levels["1"]["mean_length"]["after"])
    assert seed["verify_hard_minus_easy"] == seed["verify_scarce_minus_plenty"]  # Countdown-lite's levels: 1 and 3+
    assert "after RL, verify rate where it is hard minus where it is easy >= 0.4" in m["claims"]


def test_07_control_leaves_out_the_mechanism_and_keeps_the_flags():
    aha = load_script("examples/07_aha.py")
    args = argparse.Namespace(task="countdown_easy", reward="accuracy:1,format:0.5", search_steps=1070, mix_steps=400,
                              grpo_steps=50, from_budget=["search_steps"])
    lite, what = aha.control_args(args)  # no price: Countdown-lite on its own budget, but for the flags given
    assert (lite.task, lite.search_steps, lite.mix_steps, lite.grpo_steps, what) == ("countdown", 800, 400, 50,
                                                                                     "Countdown-lite alone")
    priced, what = aha.control_args(argparse.Namespace(**{**vars(args), "reward": "accuracy:1,alp:0.001,format:0.5"}))
    assert (priced.task, priced.reward, priced.search_steps) == ("countdown_easy", "accuracy:1,format:0.5", 1070)
    assert what == "without the price (accuracy:1,format:0.5)" and args.task == "countdown_easy"  # not changed


def test_07_derived_reads_the_levels_and_the_control_on_the_same_problems():
    aha = load_script("examples/07_aha.py")

    def level(verify, length, tries=1.0):
        return {"verify_rate": verify, "mean_length": length, "accuracy": 0.5, "mean_tries": tries}

    after = {"accuracy": 0.75, "first_try_accuracy": 0.5, "backtrack_if_first_wrong": 1.0, "backtrack_if_first_right": 0.0,
             "by_difficulty": {"sum": level(0.0, 11.0), "1": level(1.0, 80.0, 4.0), "3+": level(0.5, 40.0, 2.0)}}
    ours = [{"prompt": q, "after_accuracy": acc} for q, acc in (("a", 1.0), ("b", 0.0), ("c", 1.0), ("d", 1.0))]
    control = {"after": {"accuracy": 0.9, "by_difficulty": {"1": level(1.0, 80.0), "3+": level(1.0, 40.0)}},
               "compared": [{"prompt": q, "after_accuracy": 1.0} for q in "abcd"], "compared_accuracy": 1.0}
    r = {"after": after, "before": {**after, "accuracy": 0.5}, "where_levels": ["1", "sum"], "control": control,
         "before_sampled": {"by_difficulty": {"sum": {"verify_rate": 0.4}}}, "compared": ours,
         "after_sampled": {"by_difficulty": {"sum": {"verify_rate": 0.1}}}}
    d = aha.derived(r)
    assert d["verify_hard_minus_easy"] == 1.0 and d["length_easy_over_hard"] == pytest.approx(11 / 80)
    assert d["easy_sampled_verify_change"] == pytest.approx(-0.3) and d["verify_scarce_minus_plenty"] == 0.5
    # compared on a, b, c, d: this run 3 of 4 right, the control 4 of 4
    assert d["compared_problems"] == 4 and d["accuracy_minus_control"] == pytest.approx(3 / 4 - 1)
    assert math.isnan(d["control_verify_hard_minus_easy"])  # the control has no easy level
    assert d["gain"] == 0.25 and d["tries_scarce_minus_plenty"] == 2.0
    with pytest.raises(ValueError, match="different problems"):  # a known-bad pairing is refused
        aha.derived({**r, "compared": ours[::-1]})


def test_07_every_held_out_problem_is_every_test_problem():
    aha = load_script("examples/07_aha.py")
    every = aha.every_held_out()
    # a plain enumeration: three numbers 1-9, every target 1-9 some candidate reaches, kept if held out
    plain = {Countdown(n, t) for n in itertools.product(range(1, 10), repeat=3) for t in range(1, 10)
             if split_of(Countdown(n, t)) == "test" and any(c.value == t for c in family(n))}
    assert len(every) == len(set(every)) == len(plain) and set(every) == plain
    assert sample_problems(120, "test", unique=True)[0] in plain and every == aha.every_held_out()
    # harder than training: held out too, and every target two digits (training's are one digit)
    beyond = aha.beyond_training()
    assert beyond and all(split_of(p) == "test" and 10 <= p.target <= 19 and p.solutions() for p in beyond)
    assert not set(beyond) & plain and len(set(beyond)) == len(beyond)


@pytest.mark.slow
def test_07_easy_level_with_countdown_lite_as_the_control(tmp_path):
    # without a price the control is Countdown-lite alone; after RL both are measured greedy on the same
    # held-out Countdown-lite problems (the first 12 of every_held_out() in --quick)
    run_script("examples/07_aha.py", ["--quick", "--threads", "1", "--task", "countdown_easy", "--out", str(tmp_path / "free")])
    free = metrics(tmp_path / "free")
    seed = free["seeds"][0]
    assert seed["control"]["task"] == "countdown" and seed["control"]["what"] == "Countdown-lite alone"
    assert "contrast" not in seed and seed["compared_problems"] == 12 and "compared" not in seed["control"]
    assert "compared" not in free and "compared" not in free["control"] and "beyond_completions" not in free
    assert seed["where_levels"] == ["1", "sum"] and set(seed["by_difficulty"]) == {"sum", "1", "2", "3+"}
    assert seed["control_verify_hard_minus_easy"] is None or math.isnan(seed["control_verify_hard_minus_easy"])
    rows = [json.loads(line) for line in (tmp_path / "free" / "compared.jsonl").read_text().splitlines()]
    aha = load_script("examples/07_aha.py")
    assert [r["prompt"] for r in rows] == [p.prompt() for p in aha.every_held_out()[:12]]
    lite, easy = make_task("countdown"), make_task("countdown_easy")
    problems = {p.prompt(): p for p in aha.every_held_out()}
    for r in rows:  # each accuracy read again from the completion by each task's own rule
        assert r["after_accuracy"] == easy.accuracy(r["after"], problems[r["prompt"]])
        assert r["control_accuracy"] == lite.accuracy(r["control"], problems[r["prompt"]])
    assert seed["accuracy_minus_control"] == pytest.approx(sum(r["after_accuracy"] - r["control_accuracy"]
                                                               for r in rows) / 12)
    # --where measured 6 problems harder than training (--quick), before and after RL
    assert set(seed["beyond"]) == {"before", "after"} and 0 <= seed["beyond"]["after"]["accuracy"] <= 1
    assert seed["beyond_length_over_scarce"] == pytest.approx(
        seed["beyond"]["after"]["mean_length"] / seed["after"]["by_difficulty"]["1"]["mean_length"])
    hard = [json.loads(line) for line in (tmp_path / "free" / "beyond.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in hard] == [p.prompt() for p in aha.beyond_training()[:6]]
    assert seed["beyond"]["after"]["accuracy"] == pytest.approx(sum(r["after_accuracy"] for r in hard) / 6)
    assert "beyond_completions" not in seed
    sampled = [seed[k]["by_difficulty"]["sum"]["verify_rate"] for k in ("before_sampled", "after_sampled")]
    assert seed["easy_sampled_verify_change"] == pytest.approx(sampled[1] - sampled[0])
    assert {"RL lowers the sampled verify rate where it is easy",
            "accuracy no more than 0.03 below the control, on every held-out Countdown-lite problem"} <= set(free["claims"])


@pytest.mark.slow
def test_09_transformers(tmp_path):
    pytest.importorskip("trl")
    run_script("examples/09_transformers.py", ["--quick", "--trl-steps", "2", "--eval-per-level", "5", "--threads", "1",
                                               "--out", str(tmp_path)])
    m = metrics(tmp_path)
    assert set(m["export"]) == {"r1_zero", "student"}
    assert m["export"]["student"]["target"] == "LlamaForCausalLM"
    assert m["export"]["r1_zero"]["target"] == "Glm4MoeForCausalLM"  # the pipeline's MoE base: MHA + V3's gate
    for row in m["export"].values():
        assert row["max_abs_logit_diff"] < 1e-4 and row["greedy_identical"] == 1.0
        assert row["hf_accuracy"] == row["toyds_accuracy"]
    assert m["trl"]["steps"] == 2 and len(m["trl"]["history"]) == 2
    assert (tmp_path / "hf" / "student" / "tokenizer.json").is_file()


@pytest.mark.slow
def test_10_grpo_family(tmp_path):
    run_script("examples/10_grpo_family.py", ["--preset", "tiny", "--pretrain-steps", "20", "--grpo-steps", "2",
                                              "--variants", "grpo,gspo,cispo", "--prompts", "4", "--group", "4",
                                              "--eval-per-level", "4", "--threads", "1", "--seeds", "2", "--jobs", "1",
                                              "--out", str(tmp_path)])
    m = metrics(tmp_path)
    for run in m["seeds"]:
        assert set(run["variants"]) == {"grpo", "gspo", "cispo"}
        for v in run["variants"].values():
            assert {"accuracy", "mean_length", "entropy", "clip_frac", "seconds", "by_difficulty"} <= set(v)
            assert 0 <= v["accuracy"] <= 1 and v["entropy"] > 0 and 0 <= v["clip_frac"] <= 1
    # a verdict per variant against grpo, and "tie" whenever the margin is inside the spread
    assert set(m["verdicts"]) == {"gspo", "cispo"}
    for v in m["verdicts"].values():
        assert (v["verdict"] == "tie") == (abs(v["minus_grpo"]) <= v["spread"])
    assert set(m["summary"]["variants.gspo.accuracy"]) >= {"mean", "std", "min", "max"}


@pytest.mark.slow
def test_11_test_time(tmp_path):
    run_script("examples/11_test_time.py", ["--quick", "--max-n", "4", "--eval-per-level", "4", "--judge-prompts", "20",
                                            "--threads", "2", "--out", str(tmp_path)])
    m = metrics(tmp_path)
    assert m["ns"] == [1, 2, 4] and set(m["test_time"]) == {"base", "r1_zero", "student"}
    for model, selectors in m["test_time"].items():
        assert set(selectors) == {"majority", "oracle", "reward_model", "logprob"}
        for sel, points in selectors.items():
            assert set(points) == {"1", "2", "4"}
            # tokens grow with N: N samples cost about N times one sample's length
            assert points["1"]["tokens"] < points["2"]["tokens"] < points["4"]["tokens"]
        # the oracle is pass@N: never below any other selector at the same N, and it cannot fall as N grows
        for n in ("1", "2", "4"):
            assert all(selectors["oracle"][n]["accuracy"] >= s[n]["accuracy"] for s in selectors.values())
        assert selectors["oracle"]["1"]["accuracy"] <= selectors["oracle"]["2"]["accuracy"] <= selectors["oracle"]["4"]["accuracy"]
        # at N = 1 there is nothing to choose: every selector keeps the one sample
        assert len({s["1"]["accuracy"] for s in selectors.values()}) == 1
    assert set(m["greedy"]) == {"base", "r1_zero", "student"} and 0 <= m["judge"]["agreement"] <= 1
    assert set(m["judge_minus_vote"]) == {"base", "r1_zero", "student"}


@pytest.mark.slow
def test_04_on_policy_students_and_curves(tmp_path):
    run_script("examples/04_distillation.py", ["--teacher-preset", "tiny", "--teacher-steps", "60", "--teacher-lr", "1e-2",
                                               "--base-steps", "20", "--steps", "8", "--rl-steps", "2", "--prompts", "40",
                                               "--eval-per-digit", "6", "--probe-per-digit", "3", "--few", "20",
                                               "--digits", "1,2", "--efficiency-steps", "2", "--gkd", "--on-policy-steps",
                                               "4", "--curve-points", "2", "--threads", "1", "--out", str(tmp_path)])
    m = metrics(tmp_path)
    assert set(m["students"]) == {"rl", "sequence_kd", "logit_kd", "on_policy", "off_then_on"}
    assert set(m["on_policy"]) == {"on_policy", "off_then_on"} and "on_policy" in m["seeds"][0]
    for name, points in m["curves"].items():
        # 2 probes per student; off_then_on's steps run on from its sequence-KD half (4) into its on-policy half (2)
        steps = [p["step"] for p in points]
        assert steps == sorted(steps) and len(steps) >= 2, (name, steps)
        assert all(set(p["by_difficulty"]) == {"1", "2"} and p["seconds"] > 0 for p in points)
    assert m["curves"]["off_then_on"][-1]["step"] == 8 // 2 + 4 // 2
    assert m["curves"]["on_policy"][-1]["step"] == 4 and m["curves"]["sequence_kd"][-1]["step"] == 8
    op = m["on_policy"]["on_policy"]
    assert op["seconds_per_step"] > 0 and op["minus_sequence_kd_hardest"] == pytest.approx(
        op["by_difficulty"]["2"] - m["students"]["sequence_kd"]["by_difficulty"]["2"])
