import pytest
import torch

from toyds.core.model import make_config
from toyds.rl.reward_model import RewardModel, as_reward_fn, train_reward_model
from toyds.train.supervised import TrainConfig


def rm():
    torch.manual_seed(0)
    return RewardModel(make_config("tiny", n_layer=1))


def test_scores_are_probabilities_and_ignore_the_batch():
    m = rm()
    texts = ["<bos>1+2=<answer>3</answer><eos>", "<bos>12+34=<think>2+4=6;1+3=4;so 46</think>"]
    both = m.score(texts)
    assert len(both) == 2 and all(0 < s < 1 for s in both)
    assert abs(m.score(texts[:1])[0] - both[0]) < 1e-6  # left padding does not change a score


def test_it_learns_a_learnable_label():
    # label 1 iff the completion thinks: easy to read off the text
    texts, labels = [], []
    for a in range(40):
        texts.append(f"<bos>{a}+1=<think>{a % 10}+1;so {a + 1}</think><answer>{a + 1}</answer><eos>")
        labels.append(1.0)
        texts.append(f"<bos>{a}+1=<answer>{a + 1}</answer><eos>")
        labels.append(0.0)
    m = rm()
    hist = train_reward_model(m, texts, labels, TrainConfig(steps=60, batch_size=32, lr=3e-3, warmup=5))
    assert hist[-1]["loss"] < 0.2 < hist[0]["loss"] and len(hist) == 60
    scores = m.score(texts)
    assert sum((s > 0.5) == (y == 1.0) for s, y in zip(scores, labels)) / len(labels) > 0.95


def test_reward_fn_reads_prompt_plus_completion():
    m = rm()
    fn = as_reward_fn(m)
    got = fn(completions=["<answer>3</answer><eos>"], prompts=["<bos>1+2="], answer=[3])
    assert got == pytest.approx(m.score(["<bos>1+2=<answer>3</answer><eos>"]))


def test_mismatched_labels_are_refused():
    with pytest.raises(ValueError, match="one label per text"):
        train_reward_model(rm(), ["<bos>1+1="], [1.0, 0.0], TrainConfig(steps=1, warmup=0))
