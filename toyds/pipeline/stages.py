"""Stages that survive an interruption: how toyds/pipeline/pipeline.py keeps and resumes its work.

Each stage writes its artefact (a checkpoint or a JSON file) atomically, then its
metrics with the settings it ran with, last: a stage is finished exactly when its
metrics file exists. `resume=True` keeps a finished stage only if its recorded
settings match this run's (for the fields it and earlier stages depend on) and its
artefact loads; otherwise it says why and reruns that stage and every later one.
"""

from __future__ import annotations

import json
from pathlib import Path

from toyds.experiment.output import write_json
from toyds.train.checkpoint import check_writable, load_checkpoint


class Stages:
    """Where a run keeps its stages, and how it decides what to resume."""

    def __init__(self, out: Path, cfg, device, resume: bool, log, needs: dict[str, tuple[str, ...]]):
        self.needs = needs  # stage -> the settings it depends on, itself and through earlier stages
        self.dir, self.cfg, self.device, self.resume, self.log = Path(out) / "stages", cfg, device, resume, log
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rerun_from = None  # once a stage reruns, every later stage reruns too

    def settings(self, stage: str) -> dict:
        return {k: getattr(self.cfg, k) for k in self.needs[stage]}

    def finished(self, stage: str, artefact: str):
        """The stage's recorded metrics if it may be resumed, else None (and say why)."""
        metrics_file, path = self.dir / f"{stage}.metrics.json", self.dir / artefact
        if not self.resume or self.rerun_from is not None or not metrics_file.is_file() or not path.is_file():
            return None
        try:
            recorded = json.loads(metrics_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            self.log(f"{stage}: {metrics_file} is unreadable ({e}); running the stage again")
            return None
        want = json.loads(json.dumps(self.settings(stage)))  # tuples as lists, as JSON stores them
        have = recorded.get("settings", {}) if isinstance(recorded, dict) else {}
        differ = [k for k in want if have.get(k) != want[k]]
        if differ:
            k = differ[0]
            self.log(f"{stage}: finished with {k}={have.get(k)!r}, this run has {k}={want[k]!r}; running it again")
            return None
        return recorded

    def load(self, stage: str):
        try:
            model, _, _ = load_checkpoint(self.dir / f"{stage}.pt", self.device)
        except (ValueError, FileNotFoundError) as e:
            self.log(f"{stage}: cannot resume ({e}); running the stage again")
            return None
        return model

    def done(self, stage: str, metrics: dict) -> dict:
        metrics = {**metrics, "settings": self.settings(stage)}
        write_json(self.dir / f"{stage}.metrics.json", metrics)  # written last: marks the stage finished
        return metrics

    def ran(self, stage: str, artefact: str) -> None:
        """The stage will run: later stages must too. Check now, before any training, that its
        artefact may be written (a stranger's file there is refused, never replaced)."""
        if artefact.endswith(".pt"):
            check_writable(self.dir / artefact)
        self.rerun_from = self.rerun_from or stage
