"""toyds/moe/balance.py: every balancing rule against a value worked by hand, and rules that combine."""

import math

import pytest
import torch

from toyds.moe import balance
from toyds.moe.config import MoEConfig
from toyds.moe.layer import MoE


class One:
    """The smallest 'model' balance.after_step accepts: one MoE layer."""

    def __init__(self, moe):
        self.moe = moe

    def moe_layers(self):
        return [self.moe]


def two_experts(rule: str, **kw) -> MoE:
    """E = 2, K = 1, D = 2, softmax over logits that are the input itself (gate weight = identity)."""
    cfg = MoEConfig(dim=2, n_experts=2, top_k=1, n_shared_experts=0, expert_dim=2, balance=rule, score_func="softmax", **kw)
    moe = MoE(cfg).train()
    with torch.no_grad():
        moe.gate.weight.copy_(torch.eye(2))
    return moe


X = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # picks experts 0, 0, 1


def test_aux_loss_by_hand():
    moe = two_experts("aux_loss", balance_params={"aux_loss": {"alpha": 0.1}})
    moe(X)
    p = torch.softmax(X, -1)  # logits are x itself
    f = torch.tensor([2 / 3, 1 / 3])  # share of the 3 assignments
    # L = alpha * E * sum_i f_i P_i
    assert torch.allclose(moe.balance_loss, 0.1 * 2 * (f * p.mean(0)).sum())
    moe(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # perfect balance: the loss is exactly alpha
    assert torch.allclose(moe.balance_loss, torch.tensor(0.1 * 2 * (0.5 * 0.5 + 0.5 * 0.5)))
    moe.eval()
    moe(X)
    assert moe.balance_loss is None


def test_sequence_wise_loss_by_hand():
    """V3 eqs. 17-20 on two sequences: [x0, x1] both to expert 0, and [x2] to expert 1."""
    moe = two_experts("seq_aux", balance_params={"seq_aux": {"alpha": 0.1}})
    moe(X, seq=torch.tensor([0, 0, 1]))
    e = math.e
    s0, s1, s2 = [e**2 / (e**2 + 1), 1 / (e**2 + 1)], [e / (e + 1), 1 / (e + 1)], [1 / (e + 1), e / (e + 1)]
    # sequence 0: T = 2, f = E / (K T) * counts = [2, 0], P = mean of s' = [(s0 + s1) / 2]
    L0 = 0.1 * (2 * (s0[0] + s1[0]) / 2 + 0)
    # sequence 1: T = 1, f = [0, 2], P = s2
    L1 = 0.1 * (0 + 2 * s2[1])
    assert math.isclose(moe.balance_loss.item(), (L0 + L1) / 2, rel_tol=1e-6)  # 0.1537: the mean over sequences
    assert math.isclose((L0 + L1) / 2, 0.15370, abs_tol=1e-5)


def test_one_sequence_makes_the_sequence_loss_the_batch_loss():
    torch.manual_seed(0)
    x = torch.randn(40, 8)
    losses = []
    for rule in ("aux_loss", "seq_aux"):
        torch.manual_seed(1)
        moe = MoE(MoEConfig(dim=8, n_experts=4, top_k=2, expert_dim=4, balance=rule,
                            balance_params={rule: {"alpha": 0.3}}, score_func="sigmoid")).train()
        moe(x)  # a 2-D input is one sequence
        losses.append(moe.balance_loss.item())
    assert math.isclose(*losses, rel_tol=1e-5)


def test_aux_loss_gradient_pushes_probability_off_the_busy_expert():
    torch.manual_seed(0)
    cfg = MoEConfig(dim=8, n_experts=4, top_k=1, expert_dim=4, balance="aux_loss", balance_params={"aux_loss": {"alpha": 1.0}})
    moe = MoE(cfg).train()
    with torch.no_grad():
        moe.gate.weight.zero_()
        moe.gate.weight[0, 0] = 5.0
    x = torch.randn(64, 8).abs()  # positive first feature: expert 0 takes everything
    moe(x)
    before = moe.balance_loss.item()
    moe.balance_loss.backward()
    with torch.no_grad():
        moe.gate.weight -= 0.5 * moe.gate.weight.grad
    moe(x)
    assert moe.balance_loss.item() < before


def test_bias_rule_by_hand():
    cfg = MoEConfig(dim=4, n_experts=4, top_k=1, expert_dim=4, balance="bias", balance_params={"bias": {"gamma": 0.1}})
    moe = MoE(cfg).train()
    moe.pending_load = torch.tensor([5.0, 1.0, 2.0, 0.0])  # mean 2
    balance.after_step(One(moe))
    # b_i += gamma * sign(mean - load_i): -0.1, +0.1, 0, +0.1
    assert torch.allclose(moe.gate.bias, torch.tensor([-0.1, 0.1, 0.0, 0.1]))
    assert moe.pending_load.sum() == 0 and moe.step_load.tolist() == [5.0, 1.0, 2.0, 0.0]
    balance.after_step(One(moe))  # nothing recorded since: nothing changes
    assert torch.allclose(moe.gate.bias, torch.tensor([-0.1, 0.1, 0.0, 0.1]))


def test_bias_rule_balances_a_lopsided_router():
    torch.manual_seed(0)
    cfg = MoEConfig(dim=8, n_experts=4, top_k=1, expert_dim=4, balance="bias", balance_params={"bias": {"gamma": 0.02}},
                    score_func="sigmoid")
    moe = MoE(cfg).train()
    with torch.no_grad():
        moe.gate.weight.copy_(torch.randn(4, 8))
        moe.gate.weight[0] += 1.0
    x = torch.randn(512, 8) + 0.5
    moe(x)
    first = moe.load.max() / moe.load.mean()
    for _ in range(200):
        moe(x)
        balance.after_step(One(moe))
    moe(x)
    assert first > 1.8 and moe.load.max() / moe.load.mean() < 1.3


def test_eval_forwards_do_not_move_the_bias():
    moe = MoE(MoEConfig(dim=8, n_experts=4, expert_dim=4, balance="bias")).eval()
    moe(torch.randn(20, 8))
    balance.after_step(One(moe))
    assert (moe.gate.bias == 0).all()


def test_v3_recipe_combines_the_bias_and_the_sequence_loss():
    moe = two_experts("bias+seq_aux", balance_params={"seq_aux": {"alpha": 0.1}, "bias": {"gamma": 0.5}})
    assert moe.gate.biased and [type(r).__name__ for r in moe.rules] == ["BiasUpdate", "SequenceAuxLoss"]
    moe(X, seq=torch.tensor([0, 0, 1]))
    assert math.isclose(moe.balance_loss.item(), 0.15370, abs_tol=1e-5)  # the loss part, as seq_aux alone
    balance.after_step(One(moe))  # the bias part: load [2, 1], mean 1.5
    assert moe.gate.bias.tolist() == [-0.5, 0.5]
    # the bias steers selection only: x1 = [1, 0] now scores 0.73 - 0.5 < 0.27 + 0.5, so it goes to expert 1,
    # with its unbiased weight
    moe.eval()
    moe(X[1:2])
    assert moe.indices.tolist() == [[1]]


def test_rules_parse_and_refuse_clearly():
    assert [r.name for r in balance.parse("bias+seq_aux")] == ["bias", "seq_aux"]
    assert balance.uses_bias("aux_loss+bias") and not balance.uses_bias("aux_loss")
    for bad, match in (("bias+magic", "unknown balancing rule 'magic'"), ("bias+bias", "repeats a rule"),
                       ("none+bias", "combines 'none'"), ("", "must be a rule name")):
        with pytest.raises(ValueError, match=match):
            balance.parse(bad)


def test_a_new_rule_is_one_class(monkeypatch):
    """The workshop extension: a rule written in one place is accepted by the config and joins the table."""
    monkeypatch.setattr(balance, "RULES", dict(balance.RULES))  # keep the registry clean for other tests

    @balance.register
    class Entropy(balance.Rule):
        name = "entropy"

        def loss(self, r, cfg):
            p = balance.normalised(r.scores)
            return 0.01 * (p * p.clamp(min=1e-9).log()).sum(-1).mean()

    assert "entropy" in balance.recipes()
    moe = MoE(MoEConfig(dim=8, n_experts=4, expert_dim=4, balance="bias+entropy")).train()
    moe(torch.randn(10, 8))
    assert moe.balance_loss is not None and moe.balance_loss.requires_grad


def test_bias_update_is_pure_and_moves_by_the_sign():
    bias = torch.zeros(4)
    new = balance.bias_update(bias, torch.tensor([4.0, 2.0, 2.0, 0.0]), 0.1)
    assert torch.allclose(new, torch.tensor([-0.1, 0.0, 0.0, 0.1])) and torch.equal(bias, torch.zeros(4))
    assert torch.equal(balance.bias_update(new, torch.zeros(4), 0.1), new)  # nothing routed: unchanged
