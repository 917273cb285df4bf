"""How the workshop checker reads a value out, and says where two values part.

`show(x)` prints a value the way a person reads it: a tensor as a rounded list
(cut after a dozen numbers, with its shape when it is not 1-D), a float always
with its point (2.0, not 2), a long string cut in the middle. The case inputs in
toyds/workshop/cases_rl.py and toyds/workshop/cases_moe.py are shown with it too, so an input
reads the same way as the values it is compared with.

`differ(got, want, atol, rtol)` is None when the participant's value matches
toyds's own, else one sentence on the first difference: a missing `return`, a
wrong type or shape, or the first position whose numbers part (within atol and
rtol, NaN equal to NaN), with how many positions differ. It walks dicts, lists and
tuples, naming the key or item, so a case can return several values at once (a
loss, its gradient, its statistics). Used by run_check in toyds/workshop/checker.py.
"""

from __future__ import annotations

import math

import torch


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
