"""One optimiser step and one training loop: what every toyds trainer shares.

Supervised training (train/supervised.py), GRPO (rl/grpo.py), logit distillation
(distill/kd.py) and the reward model (rl/reward_model.py) differ only in how they
turn a batch into a loss. Everything else is written once, here:

    optimizer_step   1. loss + the MoE balancing losses (moe/balance.py)
                     2. backward, clip the global gradient norm, AdamW step
                     3. the balancing rules' after-step (V3's bias update), with the
                        expert load summed over data-parallel ranks
    fit              the loop around it: the learning rate of each step, one history
                     row per step (step, loss, lr, grad_norm, seconds and the
                     trainer's own figures, averaged over ranks), eval_fn's figures
                     every eval_every steps and at the end, prefixed "eval_",
                     step_callback(step, model), a checkpoint every save_every steps
                     and at the end (rank 0 only), a progress bar (by default only
                     when output is a terminal, so logs hold results, not redraws).

A non-finite loss or gradient norm stops training with an error that names the
step and the figure, before the optimiser step; weights made non-finite by the step
itself (an infinite learning rate) stop it right after. Either way no checkpoint is
written with NaN weights (train/checkpoint.py refuses them too).
A trainer with a new loss writes a `step_fn` and calls `fit`; it never copies the step.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import torch
from tqdm.auto import tqdm

from toyds.moe import balance
from toyds.train.checkpoint import save_checkpoint


class NonFiniteError(FloatingPointError):
    """A loss or gradient norm became NaN or infinite; training stopped before the update."""


OPTIMIZERS = ("adamw", "muon", "muon_attention")


class Optimizers(torch.optim.Optimizer):
    """Several optimisers stepped as one (Muon for the hidden matrices, AdamW for the rest): their
    param_groups side by side, so fit() sets every group's learning rate as for one optimiser."""

    def __init__(self, *parts: torch.optim.Optimizer):
        self.parts = parts
        self.param_groups = [g for o in parts for g in o.param_groups]
        self.defaults, self.state = {}, {}

    def step(self, closure=None):
        for o in self.parts:
            o.step()

    def zero_grad(self, set_to_none: bool = True):
        for o in self.parts:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {"parts": [o.state_dict() for o in self.parts]}

    def load_state_dict(self, state):
        for o, s in zip(self.parts, state["parts"]):
            o.load_state_dict(s)


def make_optimizer(model, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.98), kind: str = "adamw"):
    """AdamW that decays matrices only (norm gains and biases are left alone); or kind="muon": Muon
    (torch.optim.Muon, with Moonshot's RMS matching so it takes AdamW's learning rate) for the hidden
    weight matrices of the blocks, AdamW for the embedding, norms, gates and biases, as nanochat does;
    or kind="muon_attention": Muon for the attention's matrices only, AdamW for the feed-forward too.

    Why the third: Muon's orthogonalised updates learn *everything* faster, including the
    direct answers of a mixed corpus; a base that already adds without thinking leaves R1-Zero
    nothing to find. Muon on attention speeds up learning to read the right digits of a trace
    while the feed-forward layers (where answers are memorised) learn at AdamW's pace."""
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {kind!r}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    where = {"adamw": None, "muon": "blocks.", "muon_attention": ".attn."}[kind]
    hidden = {n for n, p in named if where and p.dim() == 2 and "blocks." in n and where in n and ".gate." not in n}
    decay = [p for n, p in named if p.dim() >= 2 and n not in hidden]
    no_decay = [p for n, p in named if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel per tensor instead of a dozen (4x faster on a CPU; same update up to rounding)
    fused = {"fused": True} if named and named[0][1].device.type in ("cpu", "cuda") else {}
    adamw = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas, **fused)
    if not hidden:
        return adamw
    muon = torch.optim.Muon([p for n, p in named if n in hidden], lr=lr, weight_decay=weight_decay,
                            adjust_lr_fn="match_rms_adamw")
    return Optimizers(muon, adamw)


def optimizer_step(model, opt, loss: torch.Tensor, *, grad_clip: float = 1.0, parallel=None,
                   step: int | None = None) -> dict:
    """The optimiser step of every toyds trainer; returns {"grad_norm", "balance_loss"?}.

    `model` is the module whose parameters `opt` updates (not a DDP wrapper: under
    data parallelism the wrapper averaged the gradients during backward already).
    """
    # 1. the trainer's loss plus the MoE layers' balancing losses from this forward
    bal = balance.model_loss(model)
    total = loss if bal is None else loss + bal
    # 2. backward (the one call in toyds), clip, check, step
    opt.zero_grad(set_to_none=True)
    total.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    # checked after backward: under DDP a NaN on one rank reaches every rank's gradients,
    # so every rank stops here together instead of waiting for the others
    where = f"step {step}" if step is not None else "this step"
    if not torch.isfinite(total):
        raise NonFiniteError(f"{where}: the loss is {float(total.detach())}; nothing was updated. A learning rate that is "
                             f"too high, or a reward or input that is NaN, are the usual causes")
    if not torch.isfinite(norm):
        raise NonFiniteError(f"{where}: the gradient norm is {float(norm)} (loss {float(total.detach()):.4g}); nothing was "
                             f"updated. Lower the learning rate or check the inputs")
    opt.step()
    # the largest |weight| over all tensors is finite iff every weight is (one reduction per tensor)
    if not torch.isfinite(torch.nn.utils.get_total_norm(params, norm_type=float("inf"))):  # e.g. an infinite rate
        lrs = sorted({g["lr"] for g in opt.param_groups})
        raise NonFiniteError(f"{where}: the optimiser step made the weights non-finite (learning rate {lrs}); "
                             f"lower the learning rate")
    # 3. balancing rules that act after the step (V3's bias), on the load of every rank
    balance.after_step(model, parallel)
    out = {"grad_norm": float(norm)}
    if bal is not None:
        out["balance_loss"] = float(bal.detach())
    return out


def show_progress(progress: bool | None, main: bool = True) -> bool:
    """progress=None: a bar only when stderr is a terminal (tqdm redraws fill a log file)."""
    return main and (sys.stderr.isatty() if progress is None else bool(progress))


def fit(model, step_fn: Callable[[int, Callable], dict], steps: int, *, opt, lr_at: Callable[[int], float],
        grad_clip: float = 1.0, parallel=None, eval_fn=None, eval_every: int = 0, step_callback=None,
        checkpoint=None, save_every: int = 0, meta: dict | None = None, desc: str = "train",
        progress: bool | None = None, postfix: tuple[str, ...] = ("loss",)) -> list[dict]:
    """Run `steps` training steps; returns the history, one dict per step.

    step_fn(step, update) computes the trainer's loss for step `step` (0-based),
    calls update(loss) (the optimiser step, bound to this model and optimiser) one
    or more times, and returns its figures, at least {"loss": float}.
    """
    main = parallel is None or parallel.is_main
    history: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=not show_progress(progress, main), leave=False)
    for step in bar:
        lr = lr_at(step)
        for g in opt.param_groups:
            g["lr"] = lr
        stats: dict = {}

        def update(loss, step=step):
            stats.update(optimizer_step(model, opt, loss, grad_clip=grad_clip, parallel=parallel, step=step + 1))
            return stats

        own = step_fn(step, update)
        if not stats:
            raise RuntimeError(f"{desc}: step_fn returned without calling update(loss)")
        row = {"step": step + 1, **own, **stats, "lr": lr}
        if parallel is not None:  # every logged number is the mean over ranks
            numbers = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}
            row.update(parallel.reduce(numbers))
        row["seconds"] = time.perf_counter() - t0
        if step_callback is not None:
            step_callback(step, model)
        last = step == steps - 1
        if eval_fn is not None and (last or (eval_every and (step + 1) % eval_every == 0)):
            row.update({f"eval_{k}": v for k, v in eval_fn(model).items()})
        history.append(row)
        bar.set_postfix({k: f"{row[k]:.3f}" for k in postfix if isinstance(row.get(k), (int, float))})
        if checkpoint is not None and main and (last or (save_every and (step + 1) % save_every == 0)):
            save_checkpoint(checkpoint, model, meta={**(meta or {}), "step": step + 1, "history": history})
    return history
