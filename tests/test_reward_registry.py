"""toyds/rl/reward_registry.py: --reward name:weight, R1's pair written once, the price per token."""

import math

import pytest

from toyds.rl import reward_registry as rr
from toyds.rl.grpo import weighted_rewards
from toyds.rl.rewards import accuracy_reward_batch, format_reward_batch
from toyds.tasks.arithmetic import Arithmetic, Problem
from toyds.tasks.countdown import CountdownLite
from toyds.tasks.countdown_reading import accuracy_batch


def test_names_resolve_to_the_tasks_own_rules_first():
    assert rr.resolve(rr.R1, Arithmetic()) == ([accuracy_reward_batch, format_reward_batch], [1.0, 0.5])
    assert rr.resolve(rr.R1, CountdownLite()) == ([accuracy_batch, format_reward_batch], [1.0, 0.5])
    fns, weights = rr.resolve("format:2, accuracy:-1,length:0.001", Arithmetic())
    assert fns == [format_reward_batch, accuracy_reward_batch, rr.length_penalty] and weights == [2.0, -1.0, 0.001]


@pytest.mark.parametrize("spec, says", [
    ("accuracy", "write name:weight pairs, comma-separated"),
    ("accuracy:1,", "the part '' is not one"),
    ("accuracy:one", "the weight of 'accuracy' must be a finite number, got 'one'"),
    ("accuracy:nan", "the weight of 'accuracy' must be a finite number, got 'nan'"),
    ("accuracy:1,accuracy:2", "names a reward twice"),
])
def test_bad_specs_are_named(spec, says):
    with pytest.raises(ValueError, match=says):
        rr.parse_spec(spec)


def test_an_unknown_name_lists_what_the_task_has():
    with pytest.raises(ValueError, match="unknown reward 'price' for task 'arithmetic'; its rewards are accuracy, "
                                         "alp, format, length"):
        rr.resolve("accuracy:1,price:1", Arithmetic())


def test_the_length_price_costs_each_token():
    # "<think>8-3=5</think>" is 7 tokens: <think> 8 - 3 = 5 </think>; the empty completion costs nothing
    assert rr.length_penalty(completions=["<think>8-3=5</think>", ""]) == [-7.0, 0.0]
    fns, weights = rr.resolve("accuracy:1,length:0.01", Arithmetic())
    total, per_fn = weighted_rewards(fns, weights, ["<answer>5</answer>", "<answer>4</answer><eos>"],
                                     [Problem(2, "+", 3, 1)] * 2)
    # r = 1 x accuracy - 0.01 x tokens: 1 - 0.03, and 0 - 0.04
    assert [round(x, 6) for x in total.tolist()] == [0.97, -0.04]


def test_a_registered_reward_is_available_by_name():
    def shout(completions, **kwargs):
        return [float("!" in c) for c in completions]

    rr.register_reward("shout", shout)
    try:
        assert rr.resolve("shout:0.5", Arithmetic()) == ([shout], [0.5])
    finally:
        rr.REWARDS.pop("shout")
    with pytest.raises(ValueError, match="register_reward takes a name"):
        rr.register_reward("not a name", shout)
    assert math.isfinite(rr.parse_spec(rr.R1)[1][1])


def test_alp_charges_each_token_by_the_groups_solve_rate():
    # ALP: -(tokens) x max(p_solved, 1/G). Two groups of 4 on 2+3 and 1+1:
    # the first solved 3 of 4 (p = 0.75), the second none (p = 0, so 1/G = 0.25 is charged)
    alp = rr.resolve("alp:1", Arithmetic())[0][0]
    right, wrong = "<answer>5</answer>", "<answer>4</answer><eos>"  # 3 and 4 tokens
    texts = [right, right, right, wrong, wrong, wrong, wrong, wrong]
    problems = [Problem(2, "+", 3, 1)] * 4 + [Problem(1, "+", 1, 1)] * 4
    total, _ = weighted_rewards([alp], [0.1], texts, problems)
    by_hand = [-0.1 * 3 * 0.75] * 3 + [-0.1 * 4 * 0.75] + [-0.1 * 4 * 0.25] * 4
    assert total.tolist() == pytest.approx(by_hand)
    # a group every sample solves pays the full price; a short right answer beats a long one
    full = rr.adaptive_length_penalty(accuracy_reward_batch)(completions=[right, "<think>x</think>" + right],
                                                             prompts=["p", "p"], answer=[5, 5])
    assert full == [-3.0, -6.0]
