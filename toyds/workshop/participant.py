"""Loading a participant's file: find the workshop's stubs, import a file, hand over a function.

A participant writes one function in a Python file (workshop/exercises/NAME.py is the
stub; workshop/solutions/NAME.py holds toyds's own code). `_import` runs that file as
a fresh module under a name of its own, so two versions of the same file never share
state. A file that does not parse, or raises while it is imported, becomes a
ParticipantError whose message is a sentence or two (the line, the code, what to do),
never a traceback: the checker (toyds/workshop/checker.py) prints it as it is.

`load_function(path, name)` is the same import, for the demos: e.g.
`python examples/03_r1_zero.py --advantages workshop/exercises/advantages.py` hands the
participant's group_advantages to train_grpo(advantage_fn=...). `function_arg` makes
an argparse type of it that also tries the function once on a small example, so a
stub not yet written is reported before minutes of training, not after.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import itertools
import sys
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]  # a clone of toyds (or an editable install of one)
_counter = itertools.count()


class ParticipantError(Exception):
    """A participant's file could not be used; the message says why, in a sentence or two."""


def workshop_dir() -> Path:
    """The workshop folder: the clone's workshop/, else ./workshop (a wheel install has none)."""
    for d in (ROOT / "workshop", Path.cwd() / "workshop"):
        if (d / "exercises").is_dir():
            return d
    raise ParticipantError("cannot find the workshop folder (workshop/exercises/): run from a clone of toyds, "
                           "or pass --file PATH")


def stub_path(exercise: str) -> Path:
    return workshop_dir() / "exercises" / f"{exercise}.py"


def solution_path(exercise: str) -> Path:
    return workshop_dir() / "solutions" / f"{exercise}.py"


def _rel(path: Path) -> str:
    """path relative to the working directory when it is inside it (shorter to read)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _where(tb, path: Path) -> str:
    """' (line N of FILE: `code`)' for the deepest frame inside the participant's file, or ''."""
    frames = [f for f in traceback.extract_tb(tb) if Path(f.filename).resolve() == path.resolve()]
    if not frames:
        return ""
    f = frames[-1]
    return f" (line {f.lineno} of {_rel(path)}: `{(f.line or '').strip()}`)"


def _import(path: Path):
    path = Path(path)
    if not path.is_file():
        raise ParticipantError(f"there is no file at {path}")
    name = f"toyds_participant_{path.stem}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses in the file need to find their module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        text = (e.text or "").rstrip("\n")
        caret = " " * max((e.offset or 1) - 1, 0) + "^"
        raise ParticipantError(f"Python cannot read {path}: {e.msg} on line {e.lineno}:\n"
                               f"    {text}\n    {caret}\nFix that line (an unclosed bracket is often "
                               f"the line above), then run the check again.") from None
    except Exception as e:  # noqa: BLE001: anything the file raises while it is imported
        raise ParticipantError(f"importing {path} raised {type(e).__name__}: {e}{_where(e.__traceback__, path)}. "
                               f"Code at the top level of the file runs on import: keep it inside functions."
                               ) from None
    return module


def load_function(path, name: str):
    """The function `name` defined in the Python file at `path`; a ValueError that says why if there is none.

    For the demos' hooks, e.g. examples/03_r1_zero.py --advantages PATH.
    """
    try:
        module = _import(Path(path))
    except ParticipantError as e:
        raise ValueError(str(e)) from None
    fn = getattr(module, name, None)
    if not callable(fn):
        defined = sorted(k for k, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__)
        raise ValueError(f"{path} defines no function named {name!r} (it defines: {', '.join(defined) or 'none'})")
    return fn


def function_arg(name: str, example: tuple = ()):
    """An argparse type that loads function `name` from a file: e.g. --advantages FILE.

    With an example call, the function is also tried once, so a stub that is not
    written yet, or a file that breaks, is reported before minutes of training.
    """

    def convert(text):
        try:
            fn = load_function(text, name)
            if example:
                fn(*example)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        except NotImplementedError:
            raise argparse.ArgumentTypeError(f"{name} in {text} is not written yet (it raises NotImplementedError): "
                                             f"write it, or check it first with toyds check") from None
        except Exception as e:  # noqa: BLE001: the participant's code, tried on an example
            raise argparse.ArgumentTypeError(f"{name} in {text} raised {type(e).__name__} on an example call: {e}"
                                             f"{_where(e.__traceback__, Path(text))}") from None
        return fn

    convert.__name__ = f"a Python file defining {name}"
    return convert


def advantages_arg(text: str):
    """--advantages FILE: the participant's group_advantages, tried on one small example first."""
    return function_arg("group_advantages", (torch.tensor([1.0, 0.0, 1.0, 0.0]), 2))(text)


def advantages_file(text: str) -> str:
    """--advantages FILE, checked like advantages_arg but kept as a path (seeds run in
    separate processes, which receive the path and load the function themselves)."""
    advantages_arg(text)
    return text
