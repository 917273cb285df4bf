"""End-to-end: every example and benchmark runs in a quick setting and writes the
metrics.json keys its issue names. Slow (they train), so marked; CI still runs them."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(rel: str, argv: list[str]):
    spec = importlib.util.spec_from_file_location(Path(rel).stem.replace("-", "_"), ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main(argv)


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_00_arithmetic(tmp_path):
    run_script("examples/00_arithmetic.py", ["--preset", "tiny", "--steps", "40", "--digits", "1,2",
                                            "--eval-per-digit", "10", "--threads", "1", "--out", str(tmp_path)])
    m = metrics(tmp_path)
    assert set(m["accuracy"]) == {"direct", "think"}
    for style in ("direct", "think"):
        assert set(m["accuracy"][style]) == {"1", "2"}
        assert all(0.0 <= a <= 1.0 for a in m["accuracy"][style].values())
    assert m["seconds"] > 0 and (tmp_path / "think.pt").is_file()


@pytest.mark.slow
def test_bench_core(tmp_path):
    run_script("examples/benchmarks/bench_core.py", ["--preset", "tiny", "--batch", "8", "--new-tokens", "16",
                                                     "--repeats", "1", "--train-steps", "1", "--threads", "1",
                                                     "--out", str(tmp_path)])
    m = metrics(tmp_path)
    assert m["kv_cache_speedup"] > 0
    assert set(m["train_tokens_per_s"]) == {"toyds", "reference"}


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
           "--batch-size", "8", "--out", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    m = metrics(tmp_path)
    assert m["world_size"] == 2 and len(m["tokens_sent"]) == 2 and len(m["tokens_received"]) == 2
    assert sum(m["tokens_sent"]) == sum(m["tokens_received"]) == 128 * 2  # every copy of every token, once
    for key in ("ep_max_abs_diff", "ep_grad_max_abs_diff", "ddp_max_param_diff"):
        assert 0.0 <= m[key] <= 1e-5, (key, m[key])
    assert 0.0 < m["exchange_time_share"] < 1.0
