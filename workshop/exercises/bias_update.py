"""Exercise `bias_update`: DeepSeek-V3's auxiliary-loss-free load balancing.

A router left alone piles tokens onto a few experts. The usual fix adds a balancing
loss, whose gradient fights the language-modelling loss. DeepSeek-V3 (report, section
2.1.2) instead keeps a bias b_i per expert, added to the scores when choosing experts
(see the `gate` exercise), and after every optimiser step nudges it by a fixed amount:

    b_i <- b_i + gamma * sign(mean_load - load_i)

An expert that took more than its share becomes a little less attractive, one that
took less a little more. No gradient, no loss term.

Write `bias_update` below; it keeps the name and signature of toyds.moe.balance.bias_update
(which the bias rule calls after each step), so your version drops into the library.

    toyds check bias_update

Notebook: notebooks/01_moe.ipynb. About 10 minutes.
"""

from __future__ import annotations

import torch


def bias_update(bias: torch.Tensor, load: torch.Tensor, gamma: float) -> torch.Tensor:
    """V3's auxiliary-loss-free rule: the new bias (E,) from the bias (E,) and the load (E,) since the last step.

    A pure function: return a new tensor and leave `bias` unchanged. If nothing was
    routed (load.sum() == 0), return the bias as it is. The result keeps bias's dtype.
    """
    # TODO b_i + gamma * sign(mean_load - load_i)
    raise NotImplementedError("write bias_update")
