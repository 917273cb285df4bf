import math

import pytest
import torch

from toyds.moe.config import MoEConfig
from toyds.moe.dispatch import grouped_mm_available
from toyds.moe.gate import Gate
from toyds.moe.layer import MoE


def logit(p):
    return math.log(p / (1 - p))


def gate_with_identity(**kw) -> Gate:
    """A gate over E = D = 8 whose logits are exactly its input: x W^T = x."""
    cfg = MoEConfig(dim=8, n_experts=8, n_shared_experts=0, expert_dim=4, **kw)
    g = Gate(cfg)
    with torch.no_grad():
        g.weight.copy_(torch.eye(8))
    return g


# ------------------------------------------------------------------ the gate


def test_softmax_gate_by_hand():
    g = gate_with_identity(top_k=2, balance="none", score_func="softmax")
    x = torch.tensor([[0.0, 2.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    w, idx = g(x)
    z = 6 + math.e**2 + math.e  # sum of exp(logits)
    assert idx.tolist() == [[1, 3]]
    # V3 keeps softmax weights as they are (they do not sum to 1 over the top-k)
    assert torch.allclose(w, torch.tensor([[math.e**2 / z, math.e / z]]))


def test_sigmoid_gate_normalises_and_scales_by_hand():
    g = gate_with_identity(top_k=2, score_func="sigmoid", route_scale=2.5, balance="none")
    x = torch.tensor([[logit(0.9), logit(0.6), logit(0.3)] + [logit(0.1)] * 5])
    w, idx = g(x)
    assert idx.tolist() == [[0, 1]]
    assert torch.allclose(w, torch.tensor([[0.9 / 1.5 * 2.5, 0.6 / 1.5 * 2.5]]))


@pytest.mark.parametrize("score_func", ["softmax", "sigmoid"])
def test_bias_changes_selection_but_not_weights(score_func):
    g = gate_with_identity(top_k=2, score_func=score_func, balance="bias")
    x = torch.tensor([[3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    _, idx = g(x)
    assert idx.tolist() == [[0, 1]]
    g.bias[2] = 10.0  # make expert 2 irresistible to the *choice*
    w, idx = g(x)
    assert idx.tolist() == [[2, 0]]
    scores = g.scores(x)[0]
    expect = scores[[2, 0]]
    if score_func == "sigmoid":
        expect = expect / expect.sum()
    assert torch.allclose(w[0], expect)  # the weights are the unbiased scores


def test_group_limited_routing_by_hand():
    # groups (0,1) (2,3) (4,5) (6,7) with sigmoid scores (.9,.1) (.8,.7) (.2,.2) (.3,.1)
    p = [0.9, 0.1, 0.8, 0.7, 0.2, 0.2, 0.3, 0.1]
    x = torch.tensor([[logit(q) for q in p]])
    kw = dict(top_k=2, score_func="sigmoid", n_groups=4, topk_groups=1)
    # without the bias rule a group scores its best expert: group 0 (0.9) wins
    _, idx = gate_with_identity(balance="none", **kw)(x)
    assert sorted(idx[0].tolist()) == [0, 1]
    # with it a group scores its top-2 sum: group 1 (0.8 + 0.7 = 1.5) beats group 0 (1.0)
    w, idx = gate_with_identity(balance="bias", **kw)(x)
    assert idx[0].tolist() == [2, 3]
    assert torch.allclose(w[0], torch.tensor([0.8 / 1.5, 0.7 / 1.5]))
    # two eligible groups: 0 and 1, so the best two experts overall among them: 0 and 2
    _, idx = gate_with_identity(balance="none", **{**kw, "topk_groups": 2})(x)
    assert idx[0].tolist() == [0, 2]


def test_bias_is_a_buffer_that_never_gets_gradients():
    moe = MoE(MoEConfig(dim=8, n_experts=4, expert_dim=4, balance="bias"))
    assert moe.gate.bias.shape == (4,) and (moe.gate.bias == 0).all()
    assert "gate.bias" in dict(moe.named_buffers()) and "gate.bias" not in dict(moe.named_parameters())
    assert moe.gate.weight.shape == (4, 8)
    moe(torch.randn(10, 8)).sum().backward()
    assert moe.gate.bias.grad is None and moe.gate.weight.grad is not None


# ------------------------------------------------------------------ dispatch


def per_token_reference(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """The MoE equation, one token at a time: shared(x) + sum_k g_k * expert_k(x)."""
    out = []
    for n in range(len(x)):
        w, idx = moe.gate(x[n : n + 1])
        y = moe.shared_experts(x[n]) if moe.shared_experts is not None else torch.zeros_like(x[n])
        for k in range(idx.shape[1]):
            y = y + w[0, k] * moe.experts[int(idx[0, k])](x[n])
        out.append(y)
    return torch.stack(out)


@pytest.mark.parametrize("dispatch", ["loop", "sorted", "grouped_mm"])
@pytest.mark.parametrize("score_func", ["softmax", "sigmoid"])
def test_dispatch_matches_a_loop_over_tokens_forward_and_backward(dispatch, score_func):
    torch.manual_seed(0)
    cfg = MoEConfig(dim=16, n_experts=8, top_k=2, n_shared_experts=1, expert_dim=12, score_func=score_func,
                    n_groups=4, topk_groups=2, route_scale=1.5, balance="bias", dispatch=dispatch)
    moe = MoE(cfg)
    with torch.no_grad():
        moe.gate.weight.normal_()  # a decisive router, so some experts get no tokens
        moe.gate.bias.copy_(torch.randn(8) * 0.1)
    x = torch.randn(40, 16, requires_grad=True)
    if dispatch == "grouped_mm" and not grouped_mm_available(x, cfg):
        pytest.skip("this torch has no usable torch._grouped_mm")
    y = moe(x)
    grads = torch.autograd.grad(y.pow(2).sum(), [x, *moe.parameters()])
    x_ref = x.detach().clone().requires_grad_()
    y_ref = per_token_reference(moe, x_ref)
    grads_ref = torch.autograd.grad(y_ref.pow(2).sum(), [x_ref, *moe.parameters()])
    assert torch.allclose(y, y_ref, atol=1e-5)
    for g, r in zip(grads, grads_ref):
        assert torch.allclose(g, r, atol=1e-4)


def test_grouped_mm_falls_back_to_sorted_when_torch_lacks_it(monkeypatch):
    torch.manual_seed(0)
    moe = MoE(MoEConfig(dim=16, n_experts=4, expert_dim=8, dispatch="grouped_mm"))
    x = torch.randn(30, 16)
    fast = moe(x)
    monkeypatch.delattr(torch, "_grouped_mm")
    assert torch.allclose(moe(x), fast, atol=1e-5)


def test_output_keeps_the_input_shape_and_reports_load():
    torch.manual_seed(0)
    moe = MoE(MoEConfig(dim=16, n_experts=4, top_k=2, expert_dim=8))
    y = moe(torch.randn(3, 5, 16))
    assert y.shape == (3, 5, 16)
    assert moe.indices.shape == (15, 2)
    assert moe.load.tolist() == torch.bincount(moe.indices.flatten(), minlength=4).float().tolist()
    assert moe.load.sum() == 30


def test_capacity_drops_tokens_past_the_limit():
    cfg = MoEConfig(dim=8, n_experts=2, top_k=1, n_shared_experts=0, expert_dim=4, balance="none",
                    capacity_factor=1.0, score_func="sigmoid")
    moe = MoE(cfg).train()
    with torch.no_grad():
        moe.gate.weight.copy_(torch.tensor([[1.0] + [0.0] * 7, [-1.0] + [0.0] * 7]))
    x = torch.zeros(4, 8)
    x[:, 0] = 1.0  # all four tokens prefer expert 0; capacity = ceil(1.0 * 4 * 1 / 2) = 2
    y = moe(x)
    assert moe.dropped == 2 and moe.load.tolist() == [2.0, 0.0]
    assert y[2:].abs().sum() == 0  # dropped tokens get nothing from the routed experts
    assert torch.allclose(y[:2], moe.experts[0](x[:2]))
    moe.eval()  # at inference every token is kept
    moe(x)
    assert moe.dropped == 0 and moe.load.tolist() == [4.0, 0.0]


# -------------------------------------------------------------------- config


def test_parameter_counts_by_hand():
    moe = MoE(MoEConfig(dim=16, n_experts=8, top_k=2, n_shared_experts=1, expert_dim=12))
    expert = 3 * 16 * 12
    assert moe.params_total() == 8 * 16 + 8 * expert + expert  # gate, routed, shared
    assert moe.params_active() == 8 * 16 + 2 * expert + expert


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(top_k=9), "top_k=9 cannot exceed n_experts=8"),
        (dict(n_groups=3), "n_groups=3 must divide n_experts=8"),
        (dict(n_groups=4, topk_groups=5), "topk_groups=5 cannot exceed n_groups=4"),
        (dict(n_groups=4, topk_groups=1, top_k=3), "top_k=3 needs more experts than the 1 eligible groups of 2"),
        (dict(n_groups=8, topk_groups=2, balance="bias"), "groups of 1 are too small"),
        (dict(score_func="relu"), "score_func must be one of"),
        (dict(balance="loss"), "unknown balancing rule 'loss'"),
        (dict(capacity_factor=0), "capacity_factor must be None or a finite number > 0, got 0"),
        (dict(route_scale=float("nan")), "route_scale must be a finite number > 0, got nan"),
        (dict(balance="aux_loss", balance_params={"aux_loss": {"alpha": float("inf")}}),
         "balancing rule 'aux_loss': alpha must be a finite number >= 0, got inf"),
        (dict(balance="bias", balance_params={"bias": {"alpha": 1.0}}), "rule 'bias' has no parameter 'alpha'; its parameters are \\['gamma'\\]"),
        (dict(balance="bias", balance_params={"aux_loss": {"alpha": 1.0}}), "'aux_loss' is not one of them"),
        (dict(n_experts=0), "n_experts must be a positive integer, got 0"),
        (dict(n_shared_experts=-1), "n_shared_experts must be an integer >= 0"),
        (dict(dispatch="magic"), "dispatch must be one of"),
    ],
)
def test_impossible_configs_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        MoEConfig(**kw)


def test_padding_is_neither_routed_nor_counted():
    torch.manual_seed(0)
    moe = MoE(MoEConfig(dim=16, n_experts=4, top_k=2, expert_dim=8, balance="bias")).train()
    x = torch.randn(10, 16)
    real = torch.tensor([True] * 6 + [False] * 4)
    y = moe(x, real)
    load, pending = moe.load.clone(), moe.pending_load.clone()
    assert load.sum() == 6 * 2 and moe.indices.shape == (6, 2)
    moe.pending_load.zero_()
    y_real = moe(x[:6])
    assert torch.allclose(y[:6], y_real, atol=1e-6) and torch.equal(moe.load, load)
    assert torch.allclose(y[6:], moe.shared_experts(x[6:]), atol=1e-6)  # padding gets the shared expert only
    assert torch.equal(pending, load)


def test_the_model_does_not_route_its_pad_tokens():
    from toyds.core.model import GPT, make_config

    torch.manual_seed(0)
    m = GPT(make_config("tiny", ffn="moe", moe=dict(n_experts=4)))
    x = torch.tensor([[1, 5, 6, 7, 0, 0], [1, 8, 9, 10, 11, 12]])  # row 0 right-padded with <pad> (id 0)
    m(x)
    assert all(layer.load.sum() == 10 * 2 for layer in m.moe_layers())  # 10 real tokens, top-2 each


def test_route_is_the_gates_routing_as_a_pure_function():
    from toyds.moe.gate import route

    cfg = MoEConfig(dim=8, n_experts=4, top_k=1, n_groups=2, topk_groups=1, balance="bias", score_func="sigmoid")
    gate = Gate(cfg)
    gate.bias.copy_(torch.tensor([0.0, 0.0, 0.6, 0.0]))
    scores = torch.tensor([[0.9, 0.1, 0.3, 0.2]])
    # the bias lifts expert 2's group (0.9 + 0.2 > 0.9 + 0.1) and chooses expert 2, but does not weight it
    w, i = route(scores, cfg, gate.bias)
    assert i.tolist() == [[2]] and torch.allclose(w, torch.tensor([[1.0]]))
    w2, i2 = gate.route(scores)
    assert torch.equal(w, w2) and torch.equal(i, i2)
    assert route(scores, cfg)[1].tolist() == [[0]]  # no bias: the best expert
