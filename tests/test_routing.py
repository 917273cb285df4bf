import math

import pytest
import torch

from toyds.core.model import GPT, make_config
from toyds.moe import balance
from toyds.moe.routing import LoadCurve, load_stats, routed_tokens, specialisation, token_classes, validation_load


def test_load_stats_by_hand():
    assert load_stats(torch.tensor([4, 4, 4, 4])) == {"max_load_ratio": 1.0, "dead_experts": 0, "load_entropy": 1.0}
    s = load_stats(torch.tensor([8, 0, 0, 0]))
    assert s["max_load_ratio"] == 4.0 and s["dead_experts"] == 3 and s["load_entropy"] == 0.0
    s = load_stats(torch.tensor([3, 1]))  # p = (3/4, 1/4)
    assert s["max_load_ratio"] == 1.5 and s["dead_experts"] == 0
    assert math.isclose(s["load_entropy"], -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2), rel_tol=1e-6)


def test_token_classes_by_hand():
    text = "<bos>12+9=<think>2+9=11;so 21</think><answer>21</answer><eos>"
    got = token_classes(text)
    expect = (["tag", "prompt digit", "prompt digit", "operator", "prompt digit", "operator", "tag"]
              + ["think digit", "think symbol", "think digit", "think symbol", "think digit", "think digit",
                 "think symbol", "think symbol", "think symbol", "think symbol", "think digit", "think digit"]
              + ["tag", "tag", "answer digit", "answer digit", "tag", "tag"])
    assert got == expect


def moe_model():
    torch.manual_seed(0)
    return GPT(make_config("tiny", ffn="moe", moe=dict(n_experts=4, top_k=2)))


TEXTS = ["<bos>12+9=<answer>21</answer><eos>", "<bos>347+589=<think>7+9=16;4+8+1=13;3+5+1=9;so 936</think>"]


def test_routing_of_a_text_does_not_depend_on_its_batch():
    m = moe_model()
    classes, batched = routed_tokens(m, TEXTS)
    assert [len(c) for c in classes] == [11, len(token_classes(TEXTS[1]))]
    for layer in batched:
        assert layer.shape == (sum(len(c) for c in classes), 2)
    for i, text in enumerate(TEXTS):
        _, alone = routed_tokens(m, [text])
        start = sum(len(c) for c in classes[:i])
        for b, a in zip(batched, alone):  # left padding changes nothing
            assert torch.equal(b[start : start + len(classes[i])], a)


def test_specialisation_rows_are_shares_that_match_a_count():
    m = moe_model()
    classes, share = specialisation(m, TEXTS, layer=0)
    assert share.shape == (len(classes), 4) and torch.allclose(share.sum(1), torch.ones(len(classes)))
    names, per_layer = routed_tokens(m, TEXTS)
    flat = [c for row in names for c in row]
    tag_rows = per_layer[0][[i for i, c in enumerate(flat) if c == "tag"]]
    expect = torch.bincount(tag_rows.flatten(), minlength=4).float() / tag_rows.numel()
    assert torch.allclose(share[classes.index("tag")], expect)
    stats = validation_load(m, TEXTS)
    assert len(stats) == 2 and all(s["max_load_ratio"] >= 1 for s in stats)


def test_dense_model_has_nothing_to_show():
    with pytest.raises(ValueError, match="no MoE layers"):
        specialisation(GPT(make_config("tiny")), TEXTS)


def test_load_curve_records_shares_every_n_steps():
    m = moe_model()
    curve = LoadCurve(layer=1, every=2)
    m.train()
    for step in range(5):
        m(torch.randint(3, 53, (2, 6)))  # a training forward...
        balance.after_step(m)  # ...and the step that consumes its load
        curve(step, m)
    assert [s for s, _ in curve.points] == [0, 2, 4]
    last = m.moe_layers()[1].step_load
    assert curve.points[-1][1] == pytest.approx((last / last.sum()).tolist()) and sum(curve.points[-1][1]) == pytest.approx(1)
    dense = LoadCurve()
    dense(0, GPT(make_config("tiny")))
    assert dense.points == []


def test_load_curve_bad_settings_are_named():
    with pytest.raises(ValueError, match="every=0"):
        LoadCurve(every=0)
    with pytest.raises(ValueError, match=r"layer=5\): the model has 2 MoE layers, so layer must be in -2..1"):
        LoadCurve(layer=5)(0, moe_model())
