import math

import pytest
import torch
import torch.nn.functional as F

from toyds.core.model import GPT, make_config
from toyds.core.rope import segment_layout
from toyds.core.tokenizer import Tokenizer
from toyds.tasks.arithmetic import sample_problems
from toyds.tasks.arithmetic_traces import build_corpus
from toyds.train.batches import collate, collate_packed, encode_pairs, pack
from toyds.train.losses import masked_lm_loss
from toyds.train.supervised import TrainConfig, lr_at, train_supervised

tok = Tokenizer()


def test_collate_masks_the_prompt_by_hand():
    ex = encode_pairs([("<bos>1+2=", "<answer>3</answer><eos>")], tok)
    x, y, m = collate(ex, tok.pad_id)
    # ids: <bos> 1 + 2 = <answer> 3 </answer> <eos>   (9 tokens, prompt 5)
    assert x.shape == (1, 8)
    assert tok.decode(y[0][m[0]].tolist()) == "<answer>3</answer><eos>"  # targets = completion only
    assert m[0].tolist() == [False] * 4 + [True] * 4


def test_collate_right_pads_and_masks_pads():
    ex = encode_pairs([("<bos>1+2=", "<answer>3</answer><eos>"), ("<bos>1+2=", "3<eos>")], tok)
    x, y, m = collate(ex, tok.pad_id)
    assert m.sum(1).tolist() == [4, 2]
    assert (y[1][~m[1]][4:] == tok.pad_id).all()


def test_masked_loss_against_plain_loop():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    total, n = 0.0, 0
    for b in range(2):
        for t in range(5):
            if mask[b, t]:
                total += -torch.log_softmax(logits[b, t], -1)[targets[b, t]]
                n += 1
    assert torch.allclose(masked_lm_loss(logits, targets, mask), total / n)


def test_lr_schedule_by_hand():
    cfg = TrainConfig(steps=11, lr=1.0, min_lr=0.1, warmup=0)  # cosine over steps 0..10
    assert lr_at(0, cfg) == 1.0
    assert math.isclose(lr_at(5, cfg), 0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))  # halfway: 0.55
    assert math.isclose(lr_at(10, cfg), 0.1)
    cfg = TrainConfig(steps=11, lr=1.0, min_lr=0.1, warmup=1)  # warm-up ends at step 0, then 9 decay steps
    assert lr_at(0, cfg) == 1.0 and lr_at(1, cfg) == 1.0 and math.isclose(lr_at(10, cfg), 0.1)
    cfg = TrainConfig(steps=10, lr=1.0, min_lr=0.1, warmup=4)
    assert [lr_at(s, cfg) for s in range(3)] == [0.25, 0.5, 0.75]


def test_wsd_schedule_by_hand():
    # 10 steps, warm-up 2, the last 30% (3 steps) decay linearly from 1.0 to 0.1
    cfg = TrainConfig(steps=10, lr=1.0, min_lr=0.1, warmup=2, schedule="wsd", decay_share=0.3)
    got = [lr_at(s, cfg) for s in range(10)]
    want = [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.7, 0.4, 0.1]
    assert all(math.isclose(g, w) for g, w in zip(got, want)), got


@pytest.mark.parametrize("field,value", [("schedule", "linear"), ("optimizer", "sgd"), ("decay_share", 0.0)])
def test_bad_recipe_fields_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(steps=10, warmup=1, **{field: value})


def _run(seed, steps=30):
    torch.manual_seed(seed)
    m = GPT(make_config("tiny"))
    pairs = build_corpus(sample_problems(300, digits=(1, 2)), "direct")
    h = train_supervised(m, pairs, TrainConfig(steps=steps, batch_size=16, warmup=min(5, steps - 1), seed=seed))
    return m, h


def test_training_lowers_loss_and_repeats_exactly():
    m1, h1 = _run(0)
    m2, h2 = _run(0)
    assert h1[-1]["loss"] == h2[-1]["loss"]
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    _, h_short = _run(0, steps=2)
    assert h1[-1]["loss"] < h_short[-1]["loss"] - 0.5


def test_moe_model_trains_and_updates_bias():
    torch.manual_seed(0)
    m = GPT(make_config("tiny", ffn="moe", moe=dict(balance="bias", balance_params={"bias": {"gamma": 0.01}})))
    pairs = build_corpus(sample_problems(200, digits=(1, 2)), "think")
    train_supervised(m, pairs, TrainConfig(steps=5, batch_size=8, warmup=1))
    assert any(moe.gate.bias.abs().sum() > 0 for moe in m.moe_layers())


def test_bad_config_and_data():
    with pytest.raises(ValueError, match="min_lr <= lr"):
        TrainConfig(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match="warmup must be in"):
        TrainConfig(steps=10, warmup=10)
    with pytest.raises(ValueError, match="no training pairs"):
        train_supervised(GPT(make_config("tiny")), [], TrainConfig(steps=2, warmup=0))


def test_recipe_is_the_documented_schedule():
    cfg = TrainConfig.recipe(700, 1e-2, batch_size=32, seed=3)
    assert (cfg.steps, cfg.lr, cfg.min_lr, cfg.warmup, cfg.batch_size, cfg.seed) == (700, 1e-2, 1e-3, 50, 32, 3)
    assert TrainConfig.recipe(200).warmup == 20 and TrainConfig.recipe(200).min_lr == 3e-3 / 10


# ------------------------------------------------------------------ packing


def test_pack_by_hand():
    assert pack([5, 3, 2, 4], 6) == [[0], [3, 2], [1]]  # 5 | 4 + 2 | 3, longest first, first fit
    assert pack([2, 2, 2], 6) == [[0, 1, 2]]
    with pytest.raises(ValueError, match="sequence of 7 positions does not fit a row of 6"):
        pack([7], 6)


def test_segment_layout_by_hand():
    pos, mask = segment_layout(torch.tensor([[0, 0, 0, 1, 1, -1]]))
    assert pos.tolist() == [[0, 1, 2, 0, 1, 0]]
    allowed = mask[0, 0].int().tolist()
    assert allowed[2] == [1, 1, 1, 0, 0, 0]  # the third token of sequence 0 sees its own sequence
    assert allowed[4] == [0, 0, 0, 1, 1, 0]  # the second token of sequence 1 never sees sequence 0
    assert allowed[5] == [0, 0, 0, 0, 0, 1]  # padding sees only itself


@pytest.mark.parametrize("ffn", ["dense", "moe"])
@torch.no_grad()
def test_a_packed_batch_gives_each_sequence_its_unpacked_loss(ffn):
    torch.manual_seed(0)
    model = GPT(make_config("tiny", ffn=ffn, moe=dict(n_experts=4, balance="none") if ffn == "moe" else None)).eval()
    tok = Tokenizer()
    examples = encode_pairs(build_corpus(sample_problems(12, digits=(1, 2, 3)), "base", seed=1), tok)
    x, y, m = collate(examples, tok.pad_id)  # (12, T): one example per row
    px, py, pm, seg = collate_packed(examples, tok.pad_id)  # fewer rows, several examples each
    assert len(px) < len(x) and int(pm.sum()) == int(m.sum())
    nll = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
    pnll = F.cross_entropy(model(px, segments=seg).flatten(0, 1), py.flatten(), reduction="none").view(py.shape)
    # each example's loss, packed and unpacked: rows are in a different order, so compare example by example
    unpacked = sorted(round(float((nll[i] * m[i]).sum()), 4) for i in range(len(x)))
    packed = sorted(round(float((pnll[r] * pm[r] * (seg[r] == k)).sum()), 4)
                    for r in range(len(px)) for k in range(int(seg[r].max()) + 1))
    assert unpacked == pytest.approx(packed, abs=2e-4)
    assert masked_lm_loss(model(px, segments=seg), py, pm).item() == pytest.approx(masked_lm_loss(model(x), y, m).item(),
                                                                                   abs=1e-5)


def test_packed_and_unpacked_training_agree():
    pairs = build_corpus(sample_problems(300, digits=(1, 2)), "base")
    runs = []
    for packed in (True, False):
        torch.manual_seed(0)
        m = GPT(make_config("tiny"))
        h = train_supervised(m, pairs, TrainConfig(steps=5, batch_size=16, warmup=1, pack=packed))
        runs.append((m, h))
    (a, ha), (b, hb) = runs
    assert [r["loss"] for r in ha] == pytest.approx([r["loss"] for r in hb], abs=1e-4)
    assert ha[0]["tokens"] == hb[0]["tokens"] and ha[0]["slots"] < hb[0]["slots"]  # same tokens, fewer slots
    assert all(torch.allclose(p, q, atol=1e-4) for p, q in zip(a.parameters(), b.parameters()))


def test_a_model_with_mtp_trains_its_modules_in_the_same_step():
    torch.manual_seed(0)
    m = GPT(make_config("tiny", mtp_depth=2))
    before = [p.clone() for p in m.mtp.parameters()]
    pairs = build_corpus(sample_problems(100, digits=(1, 2)), "think")
    h = train_supervised(m, pairs, TrainConfig(steps=3, batch_size=8, warmup=1, mtp_lambda=0.3))
    assert all(math.isclose(r["loss"], r["loss_main"] + 0.3 * r["loss_mtp"], rel_tol=1e-5) for r in h)
    assert not all(torch.equal(a, b) for a, b in zip(before, m.mtp.parameters()))
