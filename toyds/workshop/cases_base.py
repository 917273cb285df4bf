"""A case of a workshop exercise, and the small helpers the cases are written with.

A Case is one input chosen to teach one thing: `run(fn)` calls a function on that
input and returns what to compare (its result, perhaps with a gradient or a flag),
so the checker (toyds/workshop/checker.py) runs it once with toyds's own function and once
with the participant's. `shown` is the input as a person would type the call, and
`hint` what to look at when the case fails, never the code.

The helpers: `t(1, 0, 1)` a float tensor typed as its numbers; `_seeded(s)` a
generator for inputs too big to type; `_grads(loss, inputs)` the gradients a case
compares (zeros where the loss does not depend on an input); `_raises(fn, ...)` the
result or "raises ValueError", so a case can ask for an error; `_tshow(x)` a tensor
shown as in the report (toyds/workshop/compare.py), marked int64 when it is not a float.
The cases themselves are in toyds/workshop/cases_rl.py and toyds/workshop/cases_moe.py, and
the list of exercises in toyds/workshop/exercises.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from toyds.workshop.compare import show


@dataclass
class Case:
    name: str  # what the case teaches, in a few words
    shown: str  # the input, as a person would type the call
    run: Callable  # fn -> the value to compare (the function's result, perhaps with its gradient)
    hint: str  # what to look at when this case fails; never the code
    function: str | None = None  # which of the exercise's functions (default: the last)
    atol: float = 1e-5
    rtol: float = 1e-4


def t(*values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _grads(loss, inputs: list) -> list:
    """d loss / d input for each input, zeros where the loss does not depend on it (e.g. a detached
    input): the checker compares gradients, it trains nothing."""
    out = [torch.zeros_like(x) for x in inputs]
    live = [i for i, x in enumerate(inputs) if x.requires_grad]
    if isinstance(loss, torch.Tensor) and loss.requires_grad and live:
        grads = torch.autograd.grad(loss, [inputs[i] for i in live], allow_unused=True)
        for i, g in zip(live, grads):
            if g is not None:
                out[i] = g
    return out


def _raises(fn, *args, **kwargs):
    """The call's result, or 'raises ValueError' (so a case can ask for an error)."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as e:
        return f"raises {type(e).__name__}"


def _tshow(x: torch.Tensor) -> str:
    s = show(x)
    return s if x.is_floating_point() else s[:-1] + ", dtype=torch.int64)"
