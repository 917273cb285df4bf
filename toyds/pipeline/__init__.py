"""The whole R1 story in one run, resumable stage by stage (`toyds pipeline`).

    config.py     PipelineConfig, its --set overrides, and the settings each stage depends on
    pipeline.py   the stages: MoE base -> R1-Zero -> rejection sampling -> students
    stages.py     how a stage is kept, checked and resumed after an interruption
    report.py     the tables and pictures at the end
"""
