import math

import pytest
import torch

from toyds.arithmetic import build_corpus, sample_problems
from toyds.model import GPT, make_config
from toyds.tokenizer import Tokenizer
from toyds.train import TrainConfig, collate, encode_pairs, lr_at, masked_lm_loss, train_supervised

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


def _run(seed, steps=30):
    torch.manual_seed(seed)
    m = GPT(make_config("tiny"))
    pairs = build_corpus(sample_problems(300, digits=(1, 2)), "direct")
    h = train_supervised(m, pairs, TrainConfig(steps=steps, batch_size=16, warmup=min(5, steps - 1), seed=seed, progress=False))
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
    m = GPT(make_config("tiny", ffn="moe", moe=dict(balance="bias", bias_update_speed=0.01)))
    pairs = build_corpus(sample_problems(200, digits=(1, 2)), "think")
    train_supervised(m, pairs, TrainConfig(steps=5, batch_size=8, warmup=1, progress=False))
    assert any(moe.gate.bias.abs().sum() > 0 for moe in m.moe_layers())


def test_bad_config_and_data():
    with pytest.raises(ValueError, match="min_lr <= lr"):
        TrainConfig(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match="warmup must be in"):
        TrainConfig(steps=10, warmup=10)
    with pytest.raises(ValueError, match="no training pairs"):
        train_supervised(GPT(make_config("tiny")), [], TrainConfig(steps=2, warmup=0))


def test_recipe_is_the_documented_schedule():
    cfg = TrainConfig.recipe(700, 1e-2, batch_size=32, seed=3, progress=False)
    assert (cfg.steps, cfg.lr, cfg.min_lr, cfg.warmup, cfg.batch_size, cfg.seed, cfg.progress) == \
        (700, 1e-2, 1e-3, 50, 32, 3, False)
    assert TrainConfig.recipe(200).warmup == 20 and TrainConfig.recipe(200).min_lr == 3e-3 / 10


def test_length_buckets_pad_less_and_keep_every_example_possible():
    import random as _random

    from toyds.train import batches

    # 90 short examples (3 tokens) and 10 long ones (30 tokens)
    examples = [([1] * 3, 1)] * 90 + [([2] * 30, 1)] * 10
    plain = TrainConfig(steps=100, batch_size=10)
    bucketed = TrainConfig(steps=100, batch_size=10, length_buckets=8)

    def padded_tokens(cfg, n=400):
        stream = batches(examples, cfg, _random.Random(0))
        return sum(len(b) * max(len(ids) for ids, _ in b) for b in (next(stream) for _ in range(n)))

    # uniform batches of 10 nearly always hold a long example (1 - 0.9^10 = 65%), so pad to 30
    assert padded_tokens(bucketed) < 0.6 * padded_tokens(plain)
    stream = batches(examples, bucketed, _random.Random(1))
    drawn = [ids[0] for _ in range(200) for ids, _ in next(stream)]
    assert 0.05 < drawn.count(2) / len(drawn) < 0.15  # long examples as likely as before
    assert [len(b) for b in (next(stream) for _ in range(16))] == [10] * 16
    with pytest.raises(ValueError, match="length_buckets"):
        TrainConfig(length_buckets=-1)
