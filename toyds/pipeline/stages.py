"""Stages that survive an interruption: how toyds/pipeline/pipeline.py keeps and resumes its work.

Each stage writes its artefact (a checkpoint or a JSON file) atomically, then its
metrics with the settings it ran with and the sha256 of the artefact's bytes, last:
a stage is finished exactly when its metrics file exists. `resume=True` keeps a
finished stage only if its recorded settings match this run's (for the fields it and
earlier stages depend on), its artefact is the file it wrote (same sha256: another
checkpoint copied over `stages/base.pt` is not resumed from) and it loads; otherwise
it says why and reruns that stage and every later one. `current` and `kept` say, after
an interruption, which stage was running and which are safe to resume.
"""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

from toyds.experiment.output import write_json
from toyds.train.checkpoint import check_writable, load_checkpoint


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) arrived during a stage: which one, and which finished stages are kept."""

    def __init__(self, stage: str | None, kept: list[str], folder: Path, signum: int = signal.SIGINT):
        self.stage, self.kept, self.folder, self.signum = stage, kept, folder, int(signum)
        kept_words = f"the finished stages ({', '.join(kept)}) are kept in {folder}" if kept else "no stage had finished"
        super().__init__(f"interrupted in stage {stage or 'setup'}; {kept_words}; rerun with --resume to go on")

    def __reduce__(self):  # so a seed's process can hand it to the parent
        return Interrupted, (self.stage, self.kept, self.folder, self.signum)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that it gets the same cleanup and message."""

    signum = signal.SIGTERM


def terminate_as_interrupt() -> None:
    """Treat SIGTERM (a scheduler, `kill`) as Ctrl-C: the same cleanup, the same message."""

    def handler(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


class Stages:
    """Where a run keeps its stages, and how it decides what to resume."""

    def __init__(self, out: Path, cfg, device, resume: bool, log, needs: dict[str, tuple[str, ...]]):
        self.needs = needs  # stage -> the settings it depends on, itself and through earlier stages
        self.dir, self.cfg, self.device, self.resume, self.log = Path(out) / "stages", cfg, device, resume, log
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rerun_from = None  # once a stage reruns, every later stage reruns too
        self.current: str | None = None  # the stage running now
        self.kept: list[str] = []  # stages finished (or resumed) in this run, in order
        self.artefacts: dict[str, str] = {}  # stage -> its artefact's file name under stages/

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
        if recorded.get("sha256") != file_sha256(path):
            self.log(f"{stage}: {path} is not the file this stage wrote (its sha256 differs from the one recorded "
                     f"in {metrics_file.name}: it was replaced or changed); running the stage again")
            return None
        self.current = stage
        self.kept.append(stage)
        return recorded

    def load(self, stage: str):
        try:
            model, _, _ = load_checkpoint(self.dir / f"{stage}.pt", self.device)
        except (ValueError, FileNotFoundError) as e:
            self.log(f"{stage}: cannot resume ({e}); running the stage again")
            return None
        return model

    def done(self, stage: str, metrics: dict) -> dict:
        artefact = self.dir / self.artefacts[stage]
        metrics = {**metrics, "settings": self.settings(stage), "sha256": file_sha256(artefact)}
        write_json(self.dir / f"{stage}.metrics.json", metrics)  # written last: marks the stage finished
        self.kept.append(stage)
        return metrics

    def ran(self, stage: str, artefact: str) -> None:
        """The stage will run: later stages must too. Check now, before any training, that its
        artefact may be written (a stranger's file there is refused, never replaced)."""
        if artefact.endswith(".pt"):
            check_writable(self.dir / artefact)
        self.rerun_from = self.rerun_from or stage
        self.current, self.artefacts[stage] = stage, artefact


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes (None if there is no file), read in chunks."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except FileNotFoundError:
        return None
    return h.hexdigest()
