"""The workshop checker: run an exercise's cases against a participant's file, and explain.

    toyds check --list                                  # the exercises, and the toyds function each mirrors
    toyds check advantages                              # the stub in workshop/exercises/advantages.py
    toyds check advantages --file my_advantages.py      # any file that defines group_advantages

Each exercise (toyds/exercises.py) is one function cut out of toyds, with the name and
signature it has there, so a participant's solution drops into the library unchanged.
Its cases compare the participant's function with toyds's own on inputs chosen to
teach: the expected value comes from the library, never from a copy of it. The report
names the failing case, its input, the expected and the received value, what differs
and a hint; it never prints code. A file that does not parse, raises, or runs past
the timeout (an endless loop) gets a sentence instead of a traceback.

How it runs: the file is imported, and every case called, in a worker thread that the
checker waits on for at most `timeout` seconds. Python cannot stop a thread, so after a
timeout the caller must exit the process (the `toyds check` command does); tests that
exercise a hang run the command in a subprocess.

`load_function(path, name)` is the same import, for the demos: e.g.
`python examples/03_r1_zero.py --advantages workshop/exercises/advantages.py` hands the
participant's group_advantages to train_grpo(advantage_fn=...).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import itertools
import math
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from toyds.exercises import EXERCISES, Exercise

ROOT = Path(__file__).resolve().parents[1]  # a clone of toyds (or an editable install of one)
_counter = itertools.count()


# ------------------------------------------------------------------ loading


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


# ------------------------------------------------------------------ comparing


def show(x, limit: int = 12) -> str:
    """A value the way a person reads it: tensors as rounded lists, long ones cut."""
    if isinstance(x, torch.Tensor):
        if x.dim() == 0:
            return f"tensor({show(x.item())})"
        if x.is_floating_point():
            body = show([round(v, 4) if math.isfinite(v) else v for v in x.detach().flatten().tolist()], limit)
        else:
            body = show(x.flatten().tolist(), limit)
        shape = "" if x.dim() == 1 else f", shape {tuple(x.shape)}"
        return f"tensor({body}{shape})"
    if isinstance(x, float):
        s = f"{x:.6g}"
        return s if any(ch in s for ch in ".ein") else s + ".0"  # 2.0, not 2: a float reads as one
    if isinstance(x, (list, tuple)):
        items = [show(v, limit) for v in x[:limit]] + (["..."] if len(x) > limit else [])
        inner = ", ".join(items)
        return f"[{inner}]" if isinstance(x, list) else f"({inner}{',' if len(x) == 1 else ''})"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {show(v, limit)}" for k, v in x.items()) + "}"
    if isinstance(x, str) and len(x) > 80:
        return repr(x[:40] + "..." + x[-20:])
    return repr(x)


def differ(got, want, atol: float, rtol: float, where: str = "") -> str | None:
    """None if got matches want, else a sentence on the first difference."""
    at = f" at {where}" if where else ""
    if got is None and want is not None:
        return f"received None{at}: is a `return` missing?"
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a tensor{at}, received {type(got).__name__}"
        if tuple(got.shape) != tuple(want.shape):
            return f"expected shape {tuple(want.shape)}{at}, received shape {tuple(got.shape)}"
        if want.dtype == torch.bool or not want.is_floating_point():
            bad = (got != want)
        else:
            if not got.is_floating_point():
                return f"expected floating-point numbers{at}, received dtype {got.dtype}"
            g, w = got.detach().double(), want.detach().double()
            bad = ~(torch.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True))
        if bad.any():
            i = [int(v) for v in bad.nonzero()[0]]
            idx = ", ".join(map(str, i))
            return (f"position [{idx}]{at}: expected {show(want[tuple(i)].item())}, "
                    f"received {show(got[tuple(i)].item())} ({int(bad.sum())} of {bad.numel()} differ)")
        return None
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"expected a dict{at}, received {type(got).__name__}"
        if set(got) != set(want):
            return f"expected keys {sorted(want)}{at}, received {sorted(got)}"
        for k in want:
            d = differ(got[k], want[k], atol, rtol, f"{where}[{k!r}]" if where else repr(k))
            if d:
                return d
        return None
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return f"expected a {type(want).__name__} of {len(want)}{at}, received {type(got).__name__}"
        if len(got) != len(want):
            return f"expected {len(want)} items{at}, received {len(got)}"
        for i, (g, w) in enumerate(zip(got, want)):
            d = differ(g, w, atol, rtol, f"{where}[{i}]" if where else f"item {i}")
            if d:
                return d
        return None
    if isinstance(want, float) or (isinstance(want, int) and not isinstance(want, bool) and isinstance(got, float)):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (int, float)) or isinstance(got, bool) and not isinstance(want, bool):
            return f"expected a number{at}, received {type(got).__name__} {show(got)}"
        if math.isnan(want) and math.isnan(got):
            return None
        return None if math.isclose(got, want, rel_tol=rtol, abs_tol=atol) else \
            f"expected {show(want)}{at}, received {show(got)}"
    return None if got == want else f"expected {show(want)}{at}, received {show(got)}"


# ------------------------------------------------------------------ running


@dataclass
class CaseResult:
    name: str
    passed: bool
    detail: str = ""  # what went wrong, for a failed case


@dataclass
class Report:
    exercise: str
    path: Path
    results: list[CaseResult] = field(default_factory=list)
    problem: str = ""  # the file could not be used at all (no cases ran), or a case hung
    timed_out: bool = False
    lines: list[str] = field(default_factory=list)  # the report, as printed

    @property
    def passed(self) -> bool:
        return not self.problem and bool(self.results) and all(r.passed for r in self.results)


class _Timeout(Exception):
    pass


def _in_thread(fn, timeout: float):
    """fn() in a daemon thread; its result, its exception re-raised, or _Timeout."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001: SystemExit and KeyboardInterrupt from the file too
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise _Timeout
    if "error" in box:
        raise box["error"]
    return box["value"]


def _signature_problem(fn, ref, name: str) -> str | None:
    got, want = inspect.signature(fn), inspect.signature(ref)
    plain = lambda s: [(p.name, p.kind, p.default) for p in s.parameters.values()]
    if plain(got) != plain(want):
        return (f"{name} must keep the signature it has in toyds, so your solution drops into the library "
                f"unchanged:\n    expected  def {name}{want}\n    received  def {name}{got}")
    return None


def run_check(name: str, path=None, timeout: float = 10.0, say=print) -> Report:
    """Run exercise `name`'s cases against the file at `path` (default: its stub) and print the report.

    Never raises for a participant's mistake: the report says what happened.
    After a timeout (report.timed_out) a thread may still be running: exit the process.
    """
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; exercises are {', '.join(EXERCISES)} (toyds check --list)")
    ex: Exercise = EXERCISES[name]
    if path is None:
        try:
            path = stub_path(name)
        except ParticipantError as e:
            report = Report(name, Path("?"), problem=str(e))
            return _emit(report, ex, say)
    path = Path(path)
    report = Report(name, path)

    def out(line=""):
        report.lines.append(line)
        say(line)

    out(f"toyds check {name}: {ex.title}")
    out(f"  file: {_rel(path)}    function{'s' if len(ex.functions) > 1 else ''}: {', '.join(ex.functions)}"
        f"    (mirrors {', '.join(ex.mirrors)})")
    try:
        module = _in_thread(lambda: _import(path), timeout)
    except _Timeout:
        report.problem, report.timed_out = f"importing {path} did not finish in {timeout:g} s: is there an endless " \
                                           f"loop at the top level of the file?", True
        return _finish(report, ex, out)
    except ParticipantError as e:
        report.problem = str(e)
        return _finish(report, ex, out)

    fns = {}
    for fname, ref in zip(ex.functions, ex.references()):
        fn = getattr(module, fname, None)
        if not callable(fn):
            report.problem = (f"{path} defines no function named {fname}. The exercise asks for\n"
                              f"    def {fname}{inspect.signature(ref)}\n(copy the stub workshop/exercises/{name}.py "
                              f"to start from it)")
            return _finish(report, ex, out)
        sig = _signature_problem(fn, ref, fname)
        if sig:
            report.problem = sig
            return _finish(report, ex, out)
        fns[fname] = fn

    out("")
    first_failure = None
    for i, case in enumerate(ex.cases(), 1):
        fn = fns[case.function or ex.functions[-1]]
        ref = dict(zip(ex.functions, ex.references()))[case.function or ex.functions[-1]]
        want = case.run(ref)
        try:
            got = _in_thread(lambda: case.run(fn), timeout)
            detail = differ(got, want, case.atol, case.rtol)
        except _Timeout:
            report.results.append(CaseResult(case.name, False, "timeout"))
            out(f"  FAIL  {case.name}")
            report.problem = (f"case {i}, {case.name!r}, did not finish in {timeout:g} s: is there an endless loop "
                              f"(a `while` whose condition never changes)?\n  input: {case.shown}")
            report.timed_out = True
            return _finish(report, ex, out)
        except NotImplementedError:
            report.problem = (f"{case.function or ex.functions[-1]} is not written yet: it raises NotImplementedError"
                              f"{_where(sys.exc_info()[2], path)}.\nOpen {_rel(path)}, replace the "
                              f"`raise NotImplementedError` with your code (the docstring and the equation above it "
                              f"say what to compute), then run `toyds check {name}` again.")
            return _finish(report, ex, out)
        except BaseException as e:  # noqa: BLE001
            detail = (f"your function raised {type(e).__name__}: {e}{_where(e.__traceback__, path)}")
        passed = detail is None
        report.results.append(CaseResult(case.name, passed, detail or ""))
        out(f"  {'ok  ' if passed else 'FAIL'}  {case.name}")
        if not passed and first_failure is None:
            first_failure = (i, case, want, got if "raised" not in (detail or "") else None, detail)
    if first_failure:
        i, case, want, got, detail = first_failure
        out("")
        out(f"Case {i}, {case.name!r}, is the first to fail:")
        out(f"  input:     {case.shown}")
        out(f"  expected:  {show(want)}")
        if "raised" not in detail:
            out(f"  received:  {show(got)}")
        out(f"  what differs: {detail}")
        out(f"  hint: {case.hint}")
    return _finish(report, ex, out)


def _finish(report: Report, ex: Exercise, out) -> Report:
    n, ok = len(report.results), sum(r.passed for r in report.results)
    if report.problem:
        if report.lines and report.lines[-1]:
            out("")
        out(report.problem)
    if report.passed:
        out("")
        out(f"All {n} cases pass. {ex.after.format(file=_rel(report.path))}")
    elif report.results and not report.timed_out:
        out("")
        out(f"{ok} of {n} cases pass. Fix the first failing case, then run `toyds check {report.exercise}"
            f"{'' if _is_stub(report) else ' --file ' + _rel(report.path)}` again.")
    return report


def _is_stub(report: Report) -> bool:
    try:
        return report.path.resolve() == stub_path(report.exercise).resolve()
    except ParticipantError:
        return False


def _emit(report: Report, ex: Exercise, say) -> Report:
    report.lines.append(report.problem)
    say(report.problem)
    return report


def list_exercises(say=print) -> None:
    """`toyds check --list`: each exercise, what it teaches, the toyds function it mirrors and its notebook."""
    say("Exercises (toyds check NAME [--file PATH]); each mirrors a toyds function, name and signature:")
    for name, ex in EXERCISES.items():
        say(f"  {name:<18} {ex.title}")
        say(f"  {'':<18} mirrors {', '.join(ex.mirrors)}; notebook {ex.notebook}")
