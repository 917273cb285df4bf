import json

import pytest

from toyds.pipeline import config, pipeline
from toyds.pipeline.config import PipelineConfig
from toyds.pipeline.pipeline import run_pipeline

TINY = PipelineConfig(base_preset="tiny", base_steps=150, grpo_steps=2, grpo_prompts=4, group_size=2, sample_prompts=20,
                      samples_per_prompt=4, student_steps=5, eval_per_level=4, digits=(1,), logit_kd=True)


@pytest.mark.slow
def test_an_interrupted_run_keeps_finished_stages_and_resumes(tmp_path, monkeypatch):
    def power_cut(*args, **kwargs):
        raise KeyboardInterrupt("power cut during the logit-KD student stage")

    monkeypatch.setattr(pipeline, "train_logit_kd", power_cut)
    with pytest.raises(KeyboardInterrupt, match="interrupted in stage student_logit_kd; the finished stages \\(base, "
                                                "r1_zero, samples, student\\) are kept in .*stages; rerun with --resume"):
        run_pipeline(tmp_path, TINY, log=lambda *a: None)
    stages = tmp_path / "stages"
    for stage in ("base", "r1_zero", "samples", "student"):
        assert (stages / f"{stage}.metrics.json").is_file()
    assert not (stages / "student_logit_kd.pt").exists() and not (stages / "student_logit_kd.metrics.json").exists()
    base_before = json.loads((stages / "base.metrics.json").read_text())

    monkeypatch.undo()
    said = []
    result = run_pipeline(tmp_path, TINY, resume=True, log=said.append)
    assert "base: resumed from checkpoint" in said and "r1_zero: resumed from checkpoint" in said
    assert "samples: resumed" in said and "student: resumed from checkpoint" in said
    assert not any(s.startswith("student_logit_kd: resumed") for s in said)
    assert result["models"]["base"]["accuracy"] == base_before["accuracy"]
    assert set(result["models"]) == {"base", "r1_zero", "student", "student_logit_kd"}
    assert (stages / "student_logit_kd.pt").is_file()


def test_the_completion_cap_is_the_longest_worked_trace_plus_slack():
    from toyds.core.tokenizer import Tokenizer
    from toyds.tasks.arithmetic import Problem
    from toyds.tasks.arithmetic_traces import think_completion

    # 999+999 has the longest trace of 1-3 digit sums: a carry in every column
    longest = len(Tokenizer().encode(think_completion(Problem(999, "+", 999, 3))))
    assert longest == 41
    assert pipeline.completion_cap(PipelineConfig()) == longest + 8
    assert pipeline.completion_cap(PipelineConfig(digits=(1, 2, 3, 4))) > longest + 8
    assert pipeline.completion_cap(PipelineConfig(max_new_tokens=30)) == 30


def test_rejection_sampling_keeps_one_copy_of_each_text_and_stops_at_the_cap(tmp_path, monkeypatch):
    asked = {}

    def fake_rejection_sample(policy, task, problems, k, **kwargs):
        asked.update(k=k, n=len(problems), **kwargs)
        return [("<bos>1+1=", "<answer>2</answer><eos>")], {"samples": k * len(problems), "kept": 1}

    monkeypatch.setattr(pipeline, "rejection_sample", fake_rejection_sample)
    cfg = PipelineConfig(sample_prompts=10)
    kept, stats = pipeline.stage_samples(pipeline.Run(tmp_path, cfg, "cpu", resume=False, log=lambda *a: None), None)
    assert asked["k"] == 4 and asked["n"] == 10  # the default k: the RL model's pass@4 reaches the hard sums
    assert asked["dedupe"] is True and asked["max_new_tokens"] == pipeline.completion_cap(cfg) == 49
    assert kept == [("<bos>1+1=", "<answer>2</answer><eos>")] and stats["kept"] == 1


def test_the_logit_kd_student_is_opt_in():
    assert PipelineConfig().logit_kd is False
    assert "models.student_logit_kd.accuracy" not in config.headline({"logit_kd": False})
    assert "models.student_logit_kd.accuracy" in config.headline({"logit_kd": True})


def _stage_files(tmp_path, cfg, stage="base"):
    """A finished stage on disk, as run_pipeline leaves it, without training anything."""
    import torch

    from toyds.core.model import GPT, make_config
    from toyds.experiment.output import write_json
    from toyds.pipeline.stages import file_sha256
    from toyds.train.checkpoint import save_checkpoint

    run = pipeline.Run(tmp_path, cfg, "cpu", resume=True, log=lambda *a: None)
    torch.manual_seed(0)
    path = save_checkpoint(run.dir / f"{stage}.pt", GPT(make_config("tiny")), meta={"stage": stage})
    write_json(run.dir / f"{stage}.metrics.json", {"accuracy": 0.5, "settings": run.settings(stage),
                                                   "sha256": file_sha256(path)})
    return run.dir


def _resume(tmp_path, cfg, stage="base"):
    said = []
    run = pipeline.Run(tmp_path, cfg, "cpu", resume=True, log=said.append)
    ok = run.finished(stage, f"{stage}.pt") is not None and run.load(stage) is not None
    return ok, said


def test_resume_keeps_a_stage_only_when_its_settings_match(tmp_path):
    _stage_files(tmp_path, TINY)
    assert _resume(tmp_path, TINY) == (True, [])
    ok, said = _resume(tmp_path, PipelineConfig(**{**TINY.__dict__, "seed": 7}))
    assert not ok and said == ["base: finished with seed=0, this run has seed=7; running it again"]
    # a setting only a later stage uses does not stop the base from resuming
    assert _resume(tmp_path, PipelineConfig(**{**TINY.__dict__, "student_steps": 99}))[0]


def test_resume_reads_the_checkpoint_and_the_metrics_before_trusting_them(tmp_path):
    stages = _stage_files(tmp_path, TINY)
    (stages / "base.pt").write_bytes(b"junk, not a checkpoint")
    ok, said = _resume(tmp_path, TINY)
    assert not ok and "is not the file this stage wrote" in said[0] and "running the stage again" in said[0]
    # and running it again stops before any training: the junk is not a toyds checkpoint, so it is not replaced
    with pytest.raises(ValueError, match="refusing to overwrite .*base.pt: it is a regular file but not a toyds"):
        run_pipeline(tmp_path, TINY, resume=True, log=lambda *a: None)
    (stages / "base.pt").unlink()
    stages = _stage_files(tmp_path, TINY)
    text = (stages / "base.metrics.json").read_text()
    (stages / "base.metrics.json").write_text(text[: len(text) // 2])  # truncated
    ok, said = _resume(tmp_path, TINY)
    assert not ok and said[0].startswith(f"base: {stages / 'base.metrics.json'} is unreadable (")


def test_a_stage_is_kept_only_with_the_checkpoint_it_wrote(tmp_path):
    """Another toyds checkpoint copied over stages/base.pt (a `toyds train --ffn moe --out RUN/stages/base.pt`):
    its sha256 is not the one the stage recorded, so the stage runs again instead of building on it."""
    import torch

    from toyds.core.model import GPT, make_config
    from toyds.train.checkpoint import save_checkpoint

    stages = _stage_files(tmp_path, TINY)
    torch.manual_seed(1)
    save_checkpoint(stages / "base.pt", GPT(make_config("tiny", ffn="moe")))
    ok, said = _resume(tmp_path, TINY)
    assert not ok and said == [f"base: {stages / 'base.pt'} is not the file this stage wrote (its sha256 differs "
                               f"from the one recorded in base.metrics.json: it was replaced or changed); running the "
                               f"stage again"]


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_or_sigterm_says_one_line_and_resume_goes_on(tmp_path, sig, code):
    import signal
    import subprocess
    import sys
    import time

    # --quick made smaller: this checks the signal and the resume, not what the models learn
    small = ["--set", "sample_prompts=100", "--set", "student_steps=20",
             "--set", "eval_per_level=4"]
    cmd = [sys.executable, "-m", "toyds.cli", "pipeline", "--quick", *small, "--threads", "1", "--out", str(tmp_path)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's child
    while not (tmp_path / "stages" / "base.metrics.json").exists() and p.poll() is None:
        time.sleep(0.1)
    time.sleep(0.5)
    p.send_signal(getattr(signal, sig))
    out, err = p.communicate(timeout=120)
    assert p.returncode == code, err[-2000:]
    assert err == (f"toyds pipeline: interrupted in stage r1_zero; the finished stages (base) are kept in "
                   f"{tmp_path / 'stages'}; rerun with --resume to go on\n")
    assert sorted(x.name for x in (tmp_path / "stages").iterdir()) == ["base.metrics.json", "base.pt"]  # no temp file
    if sig == "SIGINT":  # SIGTERM left the same files; resuming from them once is enough
        r = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and "base: resumed from checkpoint" in r.stdout


def test_a_rerun_stage_reruns_every_later_stage(tmp_path):
    run = pipeline.Run(tmp_path, TINY, "cpu", resume=True, log=lambda *a: None)
    _stage_files(tmp_path, TINY, "student")
    assert run.finished("student", "student.pt") is not None
    run.ran("r1_zero", "r1_zero.pt")  # an earlier stage ran again: what came after it is stale
    assert run.finished("student", "student.pt") is None


def test_set_types_each_field_as_its_default_and_names_what_is_wrong():
    assert config.parse_settings(["base_lr=1e-3", "grpo_steps=40", "student_optimizer=muon"]) == {
        "base_lr": 1e-3, "grpo_steps": 40, "student_optimizer": "muon"}
    with pytest.raises(ValueError, match="FIELD one of base_problems, base_weighting, base_steps, .*got 'seed=3'"):
        config.parse_settings(["seed=3"])  # the seed has its own flag
    with pytest.raises(ValueError, match="grpo_steps wants an integer, got '4.5'"):
        config.parse_settings(["grpo_steps=4.5"])
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        config.parse_settings(["base_lr"])
    with pytest.raises(ValueError, match=r"base_optimizer must be one of \('adamw', 'muon', 'muon_attention'\), got 'sgd'"):
        PipelineConfig(base_optimizer="sgd")  # named before the base trains
    with pytest.raises(ValueError, match=r"base_weighting must be one of \('harder', 'even'\), got 'heavy'"):
        config.parse_settings(["base_weighting=heavy"])  # a string field's bad value, named as --set reads it
    assert config.parse_settings(["base_weighting=even", "base_problems=20000", "grpo_beta=0.02"]) == {
        "base_weighting": "even", "base_problems": 20000, "grpo_beta": 0.02}


def test_a_different_optimiser_reruns_the_stage_it_trains(tmp_path):
    _stage_files(tmp_path, TINY)
    ok, said = _resume(tmp_path, PipelineConfig(**{**TINY.__dict__, "base_optimizer": "muon_attention"}))
    assert not ok and said == ["base: finished with base_optimizer='adamw', this run has "
                               "base_optimizer='muon_attention'; running it again"]
    assert _resume(tmp_path, PipelineConfig(**{**TINY.__dict__, "student_optimizer": "muon"}))[0]  # base kept


def test_student_methods_train_as_their_names_say(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline, "train_supervised", lambda m, kept, train, **k: calls.append(("sft", train.steps)))
    monkeypatch.setattr(pipeline, "train_logit_kd",
                        lambda m, teacher, kept, kd, **k: calls.append(("kd", kd.train.steps, kd.on_policy, kd.kind,
                                                                        kd.train.lr)))
    monkeypatch.setattr(pipeline, "_measure", lambda *a: {"accuracy": 0.0})
    seen = {}
    for method in config.STUDENT_METHODS:
        calls.clear()
        cfg = PipelineConfig(student_method=method, on_policy_steps=7)  # 800 student steps: a warm-up of 50
        run = pipeline.Run(tmp_path / method, cfg, "cpu", resume=False, log=lambda *a: None)
        pipeline.stage_student(run, "student", kept=[], policy=None, test=[])
        seen[method] = list(calls)
    lr = PipelineConfig().student_lr
    assert seen["sequence_kd"] == [("sft", 800)]
    assert seen["logit_kd"] == [("kd", 800, 0.0, "forward", lr)]
    # on_policy: sequence KD for half the steps, then reverse KL on the student's own samples only (GKD's
    # lmbda = 1), a short run with its own warm-up at a tenth of the rate
    assert seen["on_policy"] == [("sft", 400), ("kd", 7, 1.0, "reverse", lr / 10)]
    with pytest.raises(ValueError, match="student_method must be one of .*'gkd'"):
        PipelineConfig(student_method="gkd")
    # a different student method reruns the student stage only (resume compares these settings)
    assert "student_method" in config.NEEDS["student"] and "student_method" not in config.NEEDS["samples"]
    assert config.parse_settings(["student_method=on_policy"]) == {"student_method": "on_policy"}
