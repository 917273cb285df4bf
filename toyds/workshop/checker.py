"""The workshop checker: run an exercise's cases against a participant's file, and explain.

    toyds check --list                                  # the exercises, and the toyds function each mirrors
    toyds check advantages                              # the stub in workshop/exercises/advantages.py
    toyds check advantages --file my_advantages.py      # any file that defines group_advantages

Each exercise (workshop/exercises.py) is one function cut out of toyds, with the name
and signature it has there, so a participant's solution drops into the library
unchanged. Its cases compare the participant's function with toyds's own on inputs
chosen to teach: the expected value comes from the library, never from a copy of it.
The report names the failing case, its input, the expected and the received value,
what differs and a hint; it never prints code. A file that does not parse, raises,
or runs past the timeout (an endless loop) gets a sentence instead of a traceback.

How it runs: the file is imported, and every case called, in a child process; the
checker waits at most `timeout` seconds for each step and stops the child when a
step overruns, so a loop inside C code (`sum(itertools.count())`, which never gives
a thread the interpreter back) is stopped like a Python-level one. Loading the file
is workshop/participant.py; showing and comparing values is workshop/compare.py.
"""

from __future__ import annotations

import inspect
import multiprocessing
import sys
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


def _signature_problem(fn, ref, name: str) -> str | None:
    got, want = inspect.signature(fn), inspect.signature(ref)
    plain = lambda s: [(p.name, p.kind, p.default) for p in s.parameters.values()]
    if plain(got) != plain(want):
        return (f"{name} must keep the signature it has in toyds, so your solution drops into the library "
                f"unchanged:\n    expected  def {name}{want}\n    received  def {name}{got}")
    return None


def _child(name: str, path: str, conn) -> None:
    """In the child process: import the file, run the cases, send each outcome to the parent.

    Messages: ("ready",), then ("problem", text) and stop, or ("imported",), then one
    ("case", name, passed, detail, shown input, expected, received, hint) per case."""
    ex: Exercise = EXERCISES[name]
    conn.send(("ready",))
    path = Path(path)
    try:
        module = _import(path)
    except ParticipantError as e:
        return conn.send(("problem", str(e)))
    fns = {}
    for fname, ref in zip(ex.functions, ex.references()):
        fn = getattr(module, fname, None)
        if not callable(fn):
            return conn.send(("problem", f"{path} defines no function named {fname}. The exercise asks for\n"
                                         f"    def {fname}{inspect.signature(ref)}\n(copy the stub "
                                         f"workshop/exercises/{name}.py to start from it)"))
        if sig := _signature_problem(fn, ref, fname):
            return conn.send(("problem", sig))
        fns[fname] = fn
    conn.send(("imported",))
    refs = dict(zip(ex.functions, ex.references()))
    for case in ex.cases():
        target = case.function or ex.functions[-1]
        want, got = case.run(refs[target]), None
        try:
            got = case.run(fns[target])
            detail = differ(got, want, case.atol, case.rtol)
        except NotImplementedError:
            return conn.send(("problem", f"{target} is not written yet: it raises NotImplementedError"
                                         f"{_where(sys.exc_info()[2], path)}.\nOpen {_rel(path)}, replace the "
                                         f"`raise NotImplementedError` with your code (the docstring and the equation "
                                         f"above it say what to compute), then run `toyds check {name}` again."))
        except BaseException as e:  # noqa: BLE001 (SystemExit and KeyboardInterrupt from the file too)
            detail = f"your function raised {type(e).__name__}: {e}{_where(e.__traceback__, path)}"
        raised = detail is not None and detail.startswith("your function raised")
        conn.send(("case", case.name, detail is None, detail or "", case.shown, show(want),
                   None if raised else show(got), case.hint))


def _context():
    """forkserver where the OS has it, else spawn. Not plain fork: a process forked while another thread
    holds a lock (torch's, a test runner's) can hang for ever; the fork server forks from a clean process,
    with toyds's checker loaded once, so each check still starts in milliseconds."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["toyds.workshop.checker"])
        return ctx
    return multiprocessing.get_context("spawn")


def run_check(name: str, path=None, timeout: float = 10.0, say=print, startup: float = 120.0) -> Report:
    """Run exercise `name`'s cases against the file at `path` (default: its stub) and print the report.

    Never raises for a participant's mistake: the report says what happened. Each step
    (importing the file, each case) may take `timeout` seconds; the child process that
    runs them is stopped when one overruns. `startup` bounds the child's own start.
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
    ctx = _context()
    here, there = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(name, str(path), there), daemon=True)
    child.start()
    there.close()
    cases = ex.cases()
    first_failure = None

    def receive(wait: float):
        return here.recv() if here.poll(wait) else None

    try:
        if receive(startup) is None:
            report.problem = "the checker's own process did not start; run the check again"
            return _finish(report, ex, out)
        msg = receive(timeout)
        if msg is None:
            report.problem, report.timed_out = (f"importing {path} did not finish in {timeout:g} s: is there an endless "
                                                f"loop at the top level of the file?"), True
            return _finish(report, ex, out)
        if msg[0] == "problem":
            report.problem = msg[1]
            return _finish(report, ex, out)
        out("")
        for i, case in enumerate(cases, 1):
            msg = receive(timeout)
            if msg is None:
                report.results.append(CaseResult(case.name, False, "timeout"))
                out(f"  FAIL  {case.name}")
                report.problem = (f"case {i}, {case.name!r}, did not finish in {timeout:g} s: is there an endless loop "
                                  f"(a `while` whose condition never changes)?\n  input: {case.shown}")
                report.timed_out = True
                return _finish(report, ex, out)
            if msg[0] == "problem":
                report.problem = msg[1]
                return _finish(report, ex, out)
            _, case_name, passed, detail, shown, want, got, hint = msg
            report.results.append(CaseResult(case_name, passed, detail))
            out(f"  {'ok  ' if passed else 'FAIL'}  {case_name}")
            if not passed and first_failure is None:
                first_failure = (i, case_name, shown, want, got, detail, hint)
    except EOFError:  # the child died without a word (a crash in C code, or os._exit in the file)
        child.join(5)
        report.problem = f"your code ended the checker's process (exit code {child.exitcode}) before it could report"
        return _finish(report, ex, out)
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        here.close()
    if first_failure:
        i, case_name, shown, want, got, detail, hint = first_failure
        out("")
        out(f"Case {i}, {case_name!r}, is the first to fail:")
        out(f"  input:     {shown}")
        out(f"  expected:  {want}")
        if got is not None:
            out(f"  received:  {got}")
        out(f"  what differs: {detail}")
        out(f"  hint: {hint}")
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
