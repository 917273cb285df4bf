import math

import pytest
import torch

from toyds.arithmetic import sample_problems
from toyds.checkpoint import load_checkpoint
from toyds.grpo import GRPOConfig, group_advantages, kl_k3, policy_loss, train_grpo, zero_signal_groups
from toyds.model import GPT, make_config

# ------------------------------------------------------------- advantages


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    # group 1: mean 0.25, sample std sqrt((0.75^2 + 3 * 0.25^2) / 3) = 0.5; group 2: all equal
    a = group_advantages(r, 4)
    s = 0.5 + 1e-4
    assert torch.allclose(a, torch.tensor([0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s, 0, 0, 0, 0]))
    assert torch.allclose(group_advantages(r, 4, scale="none"), torch.tensor([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0]))
    assert zero_signal_groups(r, 4) == 1


def test_equal_rewards_give_zeros_not_nan():
    a = group_advantages(torch.ones(6), 3)
    assert torch.equal(a, torch.zeros(6))


@pytest.mark.parametrize(
    "shape, g, scale, match",
    [((7,), 2, "group", "divisible by group_size"), ((4,), 1, "group", "needs group_size >= 2"),
     ((4,), 2, "batch", "scale must be one of")],
)
def test_advantage_errors(shape, g, scale, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(torch.zeros(shape), g, scale)


# --------------------------------------------------------------------- KL


def test_kl_k3_by_hand():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    # d = log(0.25 / 0.5) = -log 2:  exp(d) - d - 1 = 0.5 + log 2 - 1
    assert torch.allclose(kl_k3(logp, ref), torch.tensor([0.5 + math.log(2) - 1]))
    x = torch.randn(1000)
    assert torch.equal(kl_k3(x, x), torch.zeros(1000))
    assert (kl_k3(x, torch.randn(1000)) >= 0).all()


# ------------------------------------------------------------ policy loss

# ratios [[1, 1.5, 0.5], [1.1, 0.7, 1]], advantages [1, -1], last token of row 0 masked
RATIO = torch.tensor([[1.0, 1.5, 0.5], [1.1, 0.7, 1.0]])
OLD = torch.zeros(2, 3)
LOGP = torch.log(RATIO)
ADV = torch.tensor([1.0, -1.0])
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
# surrogate, eps = 0.2: row 0 min(r, clip(r)) = [1, 1.2 (clipped), .5 (masked)];
#                       row 1 min(-r, -clip(r)) = [-1.1, -0.8 (clipped), -1]
# token loss = -surrogate: row 0 [-1, -1.2], row 1 [1.1, 0.8, 1]


@pytest.mark.parametrize(
    "loss_type, max_len, expect",
    [
        ("grpo", None, ((-1 - 1.2) / 2 + (1.1 + 0.8 + 1) / 3) / 2),  # mean per row, then over rows
        ("dapo", None, (-1 - 1.2 + 1.1 + 0.8 + 1) / 5),  # every unmasked token alike
        ("dr_grpo", None, (-1 - 1.2 + 1.1 + 0.8 + 1) / (2 * 3)),  # constant B * T
        ("dr_grpo", 10, (-1 - 1.2 + 1.1 + 0.8 + 1) / (2 * 10)),  # constant B * max_len
    ],
)
def test_policy_loss_by_hand(loss_type, max_len, expect):
    loss, stats = policy_loss(LOGP, OLD, ADV, MASK, clip_eps=0.2, loss_type=loss_type, max_len=max_len)
    assert math.isclose(loss.item(), expect, rel_tol=1e-5)
    assert math.isclose(stats["clip_frac"], 2 / 5, rel_tol=1e-6)  # row 0 token 1 and row 1 token 1
    assert math.isclose(stats["ratio"], (1 + 1.5 + 1.1 + 0.7 + 1) / 5, rel_tol=1e-6)
    assert stats["kl"] == 0.0


def test_clip_higher_unclips_the_positive_side():
    loss, stats = policy_loss(LOGP, OLD, ADV, MASK, clip_eps=0.2, clip_eps_high=0.6)
    # row 0 token 1: 1.5 < 1.6 so unclipped, surrogate 1.5
    assert math.isclose(loss.item(), ((-1 - 1.5) / 2 + (1.1 + 0.8 + 1) / 3) / 2, rel_tol=1e-5)
    assert math.isclose(stats["clip_frac"], 1 / 5, rel_tol=1e-6)


def test_kl_penalty_adds_beta_times_k3():
    ref = LOGP + math.log(2)  # d = log 2 everywhere: k3 = 2 - log 2 - 1
    k3 = 1 - math.log(2)
    base, _ = policy_loss(LOGP, OLD, ADV, MASK)
    loss, stats = policy_loss(LOGP, OLD, ADV, MASK, ref_logp=ref, beta=0.1)
    assert math.isclose(loss.item(), base.item() + 0.1 * k3, rel_tol=1e-5)
    assert math.isclose(stats["kl"], k3, rel_tol=1e-5)


def test_gradient_flows_only_through_unclipped_unmasked_tokens():
    logp = LOGP.clone().requires_grad_()
    loss, _ = policy_loss(logp, OLD, ADV, MASK)
    loss.backward()
    # d(-ratio A)/d logp = -ratio A, divided by the row's token count and by B = 2
    expect = torch.tensor([[-1.0 * 1 / 4, 0.0, 0.0], [1.1 / 6, 0.0, 1.0 / 6]])
    assert torch.allclose(logp.grad, expect, atol=1e-6)


def test_on_policy_loss_is_minus_mean_advantage():
    # ratio 1 everywhere: loss = -mean_i A_i; with group advantages that is 0, with gradient
    logp = torch.randn(4, 5)
    adv = torch.tensor([1.0, 2.0, -0.5, 0.5])
    loss, stats = policy_loss(logp, logp, adv, torch.ones(4, 5, dtype=torch.bool))
    assert math.isclose(loss.item(), -adv.mean().item(), rel_tol=1e-6) and stats["clip_frac"] == 0


def test_policy_loss_errors():
    with pytest.raises(ValueError, match="loss_type must be one of"):
        policy_loss(LOGP, OLD, ADV, MASK, loss_type="ppo")
    with pytest.raises(ValueError, match="needs ref_logp"):
        policy_loss(LOGP, OLD, ADV, MASK, beta=0.1)


# --------------------------------------------------------------- trainer


def tiny_model(ffn="dense"):
    torch.manual_seed(0)
    return GPT(make_config("tiny", ffn=ffn))


PROBLEMS = sample_problems(64, digits=(1, 2), seed=0)


def seven_first(completions, **kwargs):
    """A toy rule: pay 1 when the completion starts with the digit 7."""
    return [float(c.startswith("7")) for c in completions]


@pytest.mark.parametrize("ffn", ["dense", "moe"])
def test_trainer_raises_a_reward_it_is_given(ffn, tmp_path):
    model = tiny_model(ffn)
    cfg = GRPOConfig(steps=12, prompts_per_step=8, group_size=8, max_new_tokens=3, lr=1e-2, beta=0.02,
                     progress=False)
    ref_before = [p.clone() for p in model.parameters()]
    hist = train_grpo(model, PROBLEMS, cfg, reward_fns=[seven_first], checkpoint=tmp_path / "p.pt")
    assert len(hist) == 12
    assert {"reward", "accuracy", "format_rate", "think_rate", "mean_length", "kl", "clip_frac",
            "zero_signal_groups"} <= set(hist[-1])
    early = sum(r["reward"] for r in hist[:3]) / 3
    late = sum(r["reward"] for r in hist[-3:]) / 3
    assert early < 0.2 and late > early + 0.3
    assert hist[-1]["kl"] > 0  # it moved away from the reference
    assert not all(torch.equal(a, b) for a, b in zip(ref_before, model.parameters()))
    loaded, _, meta = load_checkpoint(tmp_path / "p.pt")
    assert meta["step"] == 12 and len(meta["history"]) == 12


def test_a_constant_reward_teaches_nothing():
    model = tiny_model()
    before = [p.clone() for p in model.parameters()]
    cfg = GRPOConfig(steps=3, prompts_per_step=4, group_size=4, max_new_tokens=3, lr=1e-2, beta=0.0,
                     progress=False)
    hist = train_grpo(model, PROBLEMS, cfg, reward_fns=[lambda completions, **kw: [1.0] * len(completions)])
    assert all(r["zero_signal_groups"] == 4 for r in hist)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize(
    "kw, match",
    [(dict(group_size=1), "group_size must be >= 2"), (dict(loss_type="ppo"), "loss_type must be one of"),
     (dict(steps=0), "steps must be a positive integer"), (dict(temperature=0), "temperature must be > 0")],
)
def test_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        GRPOConfig(**kw)


def test_reward_function_with_the_wrong_length_is_refused():
    cfg = GRPOConfig(steps=1, prompts_per_step=2, group_size=2, max_new_tokens=2, progress=False)
    with pytest.raises(ValueError, match="returned 1 scores for 4 completions"):
        train_grpo(tiny_model(), PROBLEMS, cfg, reward_fns=[lambda completions, **kw: [0.0]])


def test_another_task_brings_its_columns_and_its_measures():
    """A problem needs only .prompt(); .columns() feeds the rewards, measure_fn the log."""
    from toyds.countdown import sample_problems as countdown_problems
    from toyds.grpo import reward_columns

    problems = countdown_problems(8, seed=0)
    cols = reward_columns(problems[:2])
    assert set(cols) == {"numbers", "target", "prompts"}
    assert cols["numbers"] == [p.numbers for p in problems[:2]] and cols["prompts"][0] == problems[0].prompt()
    assert set(reward_columns(PROBLEMS[:2])) == {"answer", "prompts"}  # arithmetic, as before

    seen = []

    def reward(completions, numbers, target, prompts, **kw):
        seen.append((numbers[0], target[0]))
        return [0.0] * len(completions)

    def measure(probs, texts):
        return {"n_completions": float(len(texts)), "first_target": float(probs[0].target), "skip": None}

    cfg = GRPOConfig(steps=2, prompts_per_step=2, group_size=3, max_new_tokens=2, progress=False)
    hist = train_grpo(tiny_model(), problems, cfg, reward_fns=[reward], measure_fn=measure)
    assert len(seen) == 2 and all(t in {p.target for p in problems} for _, t in seen)
    assert hist[0]["n_completions"] == 6.0 and "skip" not in hist[0] and "accuracy" not in hist[0]
