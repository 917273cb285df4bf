import math

import pytest
import torch

from toyds.core.model import GPT, make_config
from toyds.rl.grpo import GRPOConfig, train_grpo, weighted_rewards
from toyds.rl.grpo_loss import group_advantages, kl_k3, policy_loss, zero_signal_groups
from toyds.tasks.arithmetic import Arithmetic, sample_problems
from toyds.train.checkpoint import load_checkpoint

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


def test_batch_scale_uses_the_batch_std_and_the_group_mean():
    r = torch.tensor([1.0, 0.0, 3.0, 3.0])
    # groups [1, 0] and [3, 3]: means 0.5 and 3; batch std of [1, 0, 3, 3] (Bessel) = sqrt(6.75 / 3) = 1.5
    s = 1.5 + 1e-4
    assert torch.allclose(group_advantages(r, 2, scale="batch"), torch.tensor([0.5 / s, -0.5 / s, 0.0, 0.0]))


def test_nan_rewards_are_left_out_and_get_advantage_zero():
    nan = float("nan")
    r = torch.tensor([1.0, nan, 0.0, 0.0, nan, nan, nan, 2.0])
    # group 1: scored [1, 0, 0]: mean 1/3, std sqrt((4/9 + 1/9 + 1/9) / 2) = sqrt(1/3)
    s = math.sqrt(1 / 3) + 1e-4
    a = group_advantages(r, 4)
    expect = torch.tensor([(2 / 3) / s, 0.0, (-1 / 3) / s, (-1 / 3) / s, 0, 0, 0, 0])  # group 2: one scored row
    assert torch.allclose(a, expect) and not a.isnan().any()
    assert torch.allclose(group_advantages(r, 4, scale="none"), torch.tensor([2 / 3, 0, -1 / 3, -1 / 3, 0, 0, 0, 0]))


@pytest.mark.parametrize(
    "shape, g, scale, match",
    [((7,), 2, "group", "divisible by group_size"), ((4,), 1, "group", "needs group_size >= 2"),
     ((4,), 2, "mean", "scale must be one of")],
)
def test_advantage_errors(shape, g, scale, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(torch.zeros(shape), g, scale)


def test_weighted_rewards_add_as_trl_does():
    problems = sample_problems(3, digits=(1,), seed=0)

    def first(completions, **kw):
        return [1.0, None, float("nan")]

    def second(completions, answer, **kw):
        assert answer == [p.answer for p in problems]  # the problems' columns arrive as keyword lists
        return [2.0, 3.0, None]

    total, per_fn = weighted_rewards([first, second], [1.0, 0.5], ["a", "b", "c"], problems)
    # row 0: 1 + 0.5 * 2; row 1: first is None (counts 0), 0.5 * 3; row 2: nobody scored it -> NaN
    assert total[:2].tolist() == [2.0, 1.5] and math.isnan(total[2])
    assert set(per_fn) == {"first", "second"} and per_fn["first"][0] == 1.0 and per_fn["second"][1] == 3.0


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
    "loss_type, extra, expect",
    [
        ("grpo", {}, ((-1 - 1.2) / 2 + (1.1 + 0.8 + 1) / 3) / 2),  # mean per row, then over rows
        ("bnpo", {}, (-1 - 1.2 + 1.1 + 0.8 + 1) / 5),  # every unmasked token of this batch alike
        # every token of the generation batch alike: 20 tokens over 2 ranks, so / (20 / 2)
        ("dapo", dict(num_items_in_batch=20, num_processes=2), (-1 - 1.2 + 1.1 + 0.8 + 1) / 10),
        ("dr_grpo", dict(max_completion_length=10), (-1 - 1.2 + 1.1 + 0.8 + 1) / (2 * 10)),  # constant B * cap
    ],
)
def test_policy_loss_by_hand(loss_type, extra, expect):
    loss, stats = policy_loss(LOGP, OLD, ADV, MASK, clip_eps=0.2, loss_type=loss_type, **extra)
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


def test_bias_corrected_kl_weights_k3_by_the_ratio():
    ref = LOGP + math.log(2)  # k3 = 1 - log 2 on every token
    k3 = 1 - math.log(2)
    base, _ = policy_loss(LOGP, OLD, ADV, MASK, loss_type="bnpo")
    loss, _ = policy_loss(LOGP, OLD, ADV, MASK, loss_type="bnpo", ref_logp=ref, beta=0.1, use_bias_correction_kl=True)
    # bnpo: token mean of beta * ratio * k3 over the 5 unmasked tokens, ratios 1, 1.5, 1.1, 0.7, 1
    assert math.isclose(loss.item(), base.item() + 0.1 * k3 * (1 + 1.5 + 1.1 + 0.7 + 1) / 5, rel_tol=1e-5)


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
    with pytest.raises(ValueError, match="pass max_completion_length"):
        policy_loss(LOGP, OLD, ADV, MASK, loss_type="dr_grpo")
    with pytest.raises(ValueError, match="pass num_items_in_batch"):
        policy_loss(LOGP, OLD, ADV, MASK, loss_type="dapo")


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
    cfg = GRPOConfig(steps=12, prompts_per_step=8, group_size=8, max_new_tokens=3, lr=1e-2, beta=0.02)
    ref_before = [p.clone() for p in model.parameters()]
    hist = train_grpo(model, PROBLEMS, cfg, reward_fns=[seven_first], measure_fn=Arithmetic().measure,
                      checkpoint=tmp_path / "p.pt")
    assert len(hist) == 12
    assert {"reward", "rewards/seven_first", "accuracy", "format_rate", "think_rate", "mean_length", "kl", "clip_frac",
            "zero_signal_share", "loss", "lr", "grad_norm", "seconds"} <= set(hist[-1])
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
    cfg = GRPOConfig(steps=3, prompts_per_step=4, group_size=4, max_new_tokens=3, lr=1e-2, beta=0.0)
    hist = train_grpo(model, PROBLEMS, cfg, reward_fns=[lambda completions, **kw: [1.0] * len(completions)])
    assert all(r["zero_signal_share"] == 1.0 for r in hist)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize(
    "kw, match",
    [(dict(group_size=1), "group_size must be >= 2"), (dict(loss_type="ppo"), "loss_type must be one of"),
     (dict(steps=0), "steps must be a positive integer"), (dict(temperature=0), "temperature must be a finite number > 0"),
     (dict(lr=float("inf")), "lr must be a finite number > 0"), (dict(temperature=float("nan")), "got nan")],
)
def test_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        GRPOConfig(**kw)


def test_reward_function_with_the_wrong_length_is_refused():
    cfg = GRPOConfig(steps=1, prompts_per_step=2, group_size=2, max_new_tokens=2)
    with pytest.raises(ValueError, match="returned 1 scores for 4 completions"):
        train_grpo(tiny_model(), PROBLEMS, cfg, reward_fns=[lambda completions, **kw: [0.0]])


def test_a_length_penalty_is_one_function_and_a_weight():
    """The workshop extension: add a reward, see it weighed and logged, change nothing else."""

    def length_penalty(completions, **kwargs):
        return [-len(c) / 100 for c in completions]

    cfg = GRPOConfig(steps=2, prompts_per_step=2, group_size=2, max_new_tokens=4, beta=0.0)
    hist = train_grpo(tiny_model(), PROBLEMS, cfg, reward_fns=[seven_first, length_penalty], reward_weights=[1.0, 0.5])
    for row in hist:
        assert math.isclose(row["reward"], row["rewards/seven_first"] + 0.5 * row["rewards/length_penalty"],
                            abs_tol=1e-6)
        assert row["rewards/length_penalty"] < 0


def test_a_nan_reward_does_not_reach_the_weights():
    """A reward that returns NaN for one row: that row gets advantage 0, the policy stays finite (TRL's rule)."""

    def flaky(completions, **kwargs):
        return [float("nan")] + [float(c.startswith("7")) for c in completions[1:]]

    model = tiny_model()
    cfg = GRPOConfig(steps=3, prompts_per_step=4, group_size=4, max_new_tokens=3, lr=1e-2)
    train_grpo(model, PROBLEMS, cfg, reward_fns=[flaky])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_trainers_share_one_backward():
    """The optimiser step is written once: .backward() appears in exactly one place in toyds/."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "toyds"
    hits = [(f.relative_to(root).as_posix(), line) for f in sorted(root.rglob("*.py"))
            for line in f.read_text().splitlines() if ".backward(" in line and not line.strip().startswith("#")]
    assert [name for name, _ in hits] == ["train/trainer.py"], hits
