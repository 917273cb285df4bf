"""The tasks by name, and the command-line flags that choose one: --task NAME [--digits ..] [--ops ..].

    TASKS = {"arithmetic": Arithmetic, "countdown": CountdownLite, "countdown_easy": CountdownEasy,
             "addcheck": AdditionWithChecks}

A task is a class (tasks/base.py); its options are its dataclass fields (Arithmetic's
digits and ops). `register_task(MyTask)` adds one, from any file, so a new task
touches no file of toyds's; `make_task(name, **options)` builds one and names a
bad name or option. On the command line every script that takes --task also takes
the arithmetic options --digits and --ops; a task without them refuses them by name.
Scripts about arithmetic alone take only --digits and --ops (add_arithmetic_args).
"""

from __future__ import annotations

import argparse
import dataclasses

from toyds.experiment.flags import arg_type
from toyds.tasks.addcheck import AdditionWithChecks
from toyds.tasks.arithmetic import Arithmetic, parse_digits, parse_ops
from toyds.tasks.base import Task
from toyds.tasks.countdown import CountdownLite
from toyds.tasks.countdown_easy import CountdownEasy

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (Arithmetic, CountdownLite, CountdownEasy, AdditionWithChecks)}


def register_task(cls: type[Task]) -> type[Task]:
    """Add a Task subclass under its `name` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Task) and cls.name):
        raise ValueError(f"register_task takes a Task subclass with a name, got {cls!r}")
    TASKS[cls.name] = cls
    return cls


def make_task(name: str, **options) -> Task:
    """TASKS[name](**options), with an error naming an unknown task or option."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks are {', '.join(sorted(TASKS))}")
    fields = {f.name for f in dataclasses.fields(TASKS[name]) if f.init}
    if unknown := sorted(set(options) - fields):
        takes = ", ".join(sorted(fields)) or "no options"
        raise ValueError(f"task {name!r} takes no option {unknown[0]!r} (it takes: {takes})")
    return TASKS[name](**options)


def add_task_args(parser: argparse.ArgumentParser, default: str = "arithmetic", digits: str | None = None,
                  ops: str | None = None) -> None:
    """--task, and the arithmetic tasks' --digits and --ops (defaults: the task's own, or these)."""
    parser.add_argument("--task", default=default, help=f"the task, one of: {', '.join(sorted(TASKS))}")
    parser.add_argument("--digits", type=arg_type(parse_digits), default=None,
                        help=f"arithmetic tasks: difficulty levels, digits per operand, comma-separated "
                             f"(default {digits or 'the task default, 1,2,3'})")
    parser.add_argument("--ops", type=arg_type(parse_ops), default=None,
                        help=f"arithmetic tasks: operations from + - x, comma-separated (default {ops or '+'})")
    parser.set_defaults(task_default_digits=digits, task_default_ops=ops)


def add_arithmetic_args(parser: argparse.ArgumentParser, digits: str = "1,2,3", ops: str = "+") -> None:
    """--digits 1,2,3 --ops +,-,x for a script that runs the arithmetic task only (chapters 0, 1, 4, 8)."""
    parser.add_argument("--digits", type=arg_type(parse_digits), default=parse_digits(digits),
                        help="difficulty levels: digits per operand, comma-separated")
    parser.add_argument("--ops", type=arg_type(parse_ops), default=parse_ops(ops),
                        help="operations from + - x, comma-separated")


def task_from_args(args, parser: argparse.ArgumentParser | None = None) -> Task:
    """The task the flags of add_task_args chose. A flag the task does not take is a ValueError
    naming it, or with `parser`, that parser's usage error (exit 2) before any work starts."""
    if parser is not None:
        try:
            return task_from_args(args)
        except ValueError as e:
            parser.error(str(e))
    if args.task not in TASKS:
        raise ValueError(f"--task {args.task!r}: tasks are {', '.join(sorted(TASKS))}")
    fields = {f.name for f in dataclasses.fields(TASKS[args.task]) if f.init}
    options = {}
    for flag in ("digits", "ops"):
        given, default = getattr(args, flag, None), getattr(args, f"task_default_{flag}", None)
        if given is not None and flag not in fields:
            raise ValueError(f"--{flag} is an option of the arithmetic tasks; task {args.task!r} does not take it")
        if given is None and default is not None and flag in fields:
            given = (parse_digits if flag == "digits" else parse_ops)(default)
        if given is not None:
            options[flag] = given
    return make_task(args.task, **options)
