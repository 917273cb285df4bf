import json

import pytest

from toyds import pipeline
from toyds.pipeline import PipelineConfig, run_pipeline

TINY = PipelineConfig(base_preset="tiny", base_steps=150, grpo_steps=2, grpo_prompts=4, group_size=2, sample_prompts=20,
                      samples_per_prompt=4, student_steps=5, eval_per_digit=4, digits=(1,))


@pytest.mark.slow
def test_an_interrupted_run_keeps_finished_stages_and_resumes(tmp_path, monkeypatch):
    def power_cut(*args, **kwargs):
        raise KeyboardInterrupt("power cut during the logit-KD student stage")

    monkeypatch.setattr(pipeline, "train_logit_kd", power_cut)
    with pytest.raises(KeyboardInterrupt):
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
