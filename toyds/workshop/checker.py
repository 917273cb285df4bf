"""The workshop checker: run an exercise's cases against a participant's file, and explain.

    toyds check --list                                  # the exercises, and the toyds function each mirrors
    toyds check advantages                              # the stub in workshop/exercises/advantages.py
    toyds check advantages --file my_advantages.py      # any file that defines group_advantages

Each exercise (toyds/workshop/exercises.py) is one function cut out of toyds, with the name and
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

This file runs the cases and writes the report; loading a participant's file
(load_function, for the demos, too) is toyds/workshop/participant.py, and showing and
comparing values is toyds/workshop/compare.py. Their names are imported here as well, so
`from toyds.workshop import load_function, show` keeps working.
"""

from __future__ import annotations

import inspect
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from toyds.workshop.compare import differ, show
from toyds.workshop.exercises import EXERCISES, Exercise
from toyds.workshop.participant import ParticipantError, _import, _rel, _where, stub_path

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
