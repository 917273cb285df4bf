"""The GRPO family of TRL 1.16 in rl/grpo_loss.py, each against numbers worked by hand.

The fixture is tests/test_grpo.py's: ratios [[1, 1.5, 0.5], [1.1, 0.7, 1]], advantages
[1, -1], the last token of row 0 masked, eps 0.2. Its plain token losses are
row 0 [-1, -1.2], row 1 [1.1, 0.8, 1].
"""

import math

import pytest
import torch

from toyds.rl.grpo_loss import high_entropy_mask, off_policy_mask, policy_loss

RATIO = torch.tensor([[1.0, 1.5, 0.5], [1.1, 0.7, 1.0]])
OLD = torch.zeros(2, 3)
LOGP = torch.log(RATIO)
ADV = torch.tensor([1.0, -1.0])
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
ENT = torch.tensor([[0.1, 0.9, 5.0], [0.5, 0.3, 0.7]])  # 5.0 sits on the masked token
PLAIN_GRPO = ((-1 - 1.2) / 2 + (1.1 + 0.8 + 1) / 3) / 2


def close(a, b):
    return math.isclose(float(a.detach()) if torch.is_tensor(a) else a, b, rel_tol=1e-5, abs_tol=1e-7)


def test_gspo_has_one_ratio_per_completion_the_mean_of_its_log_ratios():
    loss, stats = policy_loss(LOGP, OLD, ADV, MASK, importance_sampling_level="sequence")
    w0, w1 = math.sqrt(1.5), (1.1 * 0.7) ** (1 / 3)  # exp(mean log w) over each row's real tokens
    # row 0: A = 1, w0 = 1.22 clipped to 1.2; row 1: A = -1, w1 = 0.92 inside the range
    assert close(loss, (-1.2 + w1) / 2)
    assert close(stats["ratio"], (2 * w0 + 3 * w1) / 5) and close(stats["clip_frac"], 2 / 5)  # row 0's tokens


def test_cispo_weights_the_log_probability_by_the_detached_capped_ratio():
    logp = LOGP.clone().requires_grad_(True)
    loss, stats = policy_loss(logp, OLD, ADV, MASK, loss_type="cispo", clip_eps_high=1.2, num_items_in_batch=5)
    # -min(w, 1.2) * A * log pi, summed over real tokens, / 5 tokens (aggregated as dapo)
    by_hand = -(1.0 * math.log(1.0) + 1.2 * math.log(1.5)) + (1.1 * math.log(1.1) + 0.7 * math.log(0.7) + 0.0)
    assert close(loss, by_hand / 5)
    loss.backward()
    # the gradient of each real token is -min(w, 1.2) * A / 5: the ratio weights it and never stops it
    want = torch.tensor([[-1.0, -1.2, 0.0], [1.1, 0.7, 1.0]]) / 5
    assert torch.allclose(logp.grad, want, atol=1e-6)
    assert close(stats["clip_frac"], 1 / 5)  # only w = 1.5 is over the cap
    with pytest.raises(ValueError, match="pass num_items_in_batch"):
        policy_loss(LOGP, OLD, ADV, MASK, loss_type="cispo")


def test_sapo_is_a_sigmoid_gate_with_its_own_temperature_on_each_side():
    loss, _ = policy_loss(LOGP, OLD, ADV, MASK, loss_type="sapo")  # TRL's temperatures 1.0 / 1.05

    def sig(x):
        return 1 / (1 + math.exp(-x))

    row0 = [-sig(1.0 * (r - 1)) * 4 / 1.0 for r in (1.0, 1.5)]  # A = +1
    row1 = [sig(1.05 * (r - 1)) * 4 / 1.05 for r in (1.1, 0.7, 1.0)]  # A = -1
    assert close(loss, (sum(row0) / 2 + sum(row1) / 3) / 2)  # aggregated as grpo
    # at w = 1 the gate's slope is A (sigmoid'(0) * 4 = 1): on-policy it is plain GRPO's gradient
    logp = torch.zeros(1, 2, requires_grad=True)
    policy_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2, dtype=torch.bool),
                loss_type="sapo")[0].backward()
    assert torch.allclose(logp.grad, torch.full((1, 2), -0.5))


def test_delta_caps_the_unclipped_ratio_of_a_negative_advantage():
    logp, old, adv, mask = torch.log(torch.tensor([[3.0]])), torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1, dtype=torch.bool)
    assert close(policy_loss(logp, old, adv, mask)[0], 3.0)  # -min(-3, -1.2): PPO's clip does not bound it
    assert close(policy_loss(logp, old, adv, mask, delta=2.0)[0], 2.0)  # INTELLECT-2: capped at delta
    assert close(policy_loss(LOGP, OLD, ADV, MASK, delta=2.0)[0], PLAIN_GRPO)  # no ratio above 2 here


def test_top_entropy_quantile_keeps_the_highest_entropy_tokens_only():
    # real entropies 0.1, 0.9, 0.5, 0.3, 0.7: the 0.6 quantile is 0.5 + 0.4 * 0.2 = 0.58
    keep = high_entropy_mask(ENT, MASK, 0.6)
    assert keep.tolist() == [[False, True, False], [False, False, True]]  # the masked 5.0 never counts
    loss, stats = policy_loss(LOGP, OLD, ADV, MASK, entropies=ENT, top_entropy_quantile=0.4)
    assert close(loss, (-1.2 / 2 + 1.0 / 3) / 2)  # the denominators stay every real token
    assert close(stats["entropy"], 2.5 / 5)
    with pytest.raises(ValueError, match="need the per-token entropies"):
        policy_loss(LOGP, OLD, ADV, MASK, top_entropy_quantile=0.2)


def test_entropy_coef_subtracts_the_mean_entropy_of_the_tokens_the_loss_acts_on():
    assert close(policy_loss(LOGP, OLD, ADV, MASK, entropies=ENT, entropy_coef=0.1)[0], PLAIN_GRPO - 0.1 * 0.5)
    both = policy_loss(LOGP, OLD, ADV, MASK, entropies=ENT, top_entropy_quantile=0.4, entropy_coef=0.1)[0]
    assert close(both, (-1.2 / 2 + 1.0 / 3) / 2 - 0.1 * (0.9 + 0.7) / 2)


def test_the_off_policy_mask_drops_a_drifted_completion_with_a_negative_advantage():
    # drift = mean(log pi_old - log pi): row 0 -(0 + log 1.5) / 2 = -0.20, row 1 -(log 1.1 + log 0.7) / 3 = 0.087
    assert off_policy_mask(ADV, LOGP, OLD, MASK, 0.05).flatten().tolist() == [1.0, 0.0]
    assert off_policy_mask(ADV, LOGP, OLD, MASK, 0.1).flatten().tolist() == [1.0, 1.0]
    assert off_policy_mask(-ADV, LOGP, OLD, MASK, -0.5).flatten().tolist() == [0.0, 1.0]  # A >= 0 is always kept
    assert close(policy_loss(LOGP, OLD, ADV, MASK, off_policy_mask_threshold=0.05)[0], ((-1 - 1.2) / 2 + 0.0) / 2)
    assert close(policy_loss(LOGP, OLD, ADV, MASK, off_policy_mask_threshold=0.1)[0], PLAIN_GRPO)


def test_the_masks_leave_the_kl_term_alone():
    ref = LOGP + math.log(2)  # k3 = 2 - log 2 - 1 on every token
    k3 = 1 - math.log(2)
    loss = policy_loss(LOGP, OLD, ADV, MASK, ref_logp=ref, beta=0.1, off_policy_mask_threshold=0.05)[0]
    assert close(loss, ((-1 - 1.2) / 2 + 0.1 * k3 + 0.1 * k3) / 2)  # row 1 dropped, its KL kept


def test_bad_levels_are_named():
    with pytest.raises(ValueError, match="importance_sampling_level must be one of \\('token', 'sequence'\\), got 'seq'"):
        policy_loss(LOGP, OLD, ADV, MASK, importance_sampling_level="seq")


# ------------------------------------------- against TRL 1.16's own _compute_loss


class _Accelerator:  # one process: gathering and reducing return what they are given
    num_processes, is_main_process = 1, True

    def pad_across_processes(self, x, dim=0, pad_index=0):
        return x

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def reduce(self, x, reduction="sum"):
        return x


def trl_loss(logp, old, adv, mask, entropies, **options):
    """TRL's GRPOTrainer._compute_loss on these tensors, through a stand-in for the trainer."""
    from collections import defaultdict
    from types import SimpleNamespace

    trainer_cls = pytest.importorskip("trl").GRPOTrainer
    args = SimpleNamespace(use_bias_correction_kl=False, delta=None, sapo_temperature_pos=1.0,
                           sapo_temperature_neg=1.05, steps_per_generation=1)
    for k in ("delta", "sapo_temperature_pos", "sapo_temperature_neg", "use_bias_correction_kl"):
        if k in options:
            setattr(args, k, options.pop(k))
    eps = options.pop("epsilon", 0.2)
    t = SimpleNamespace(args=args, accelerator=_Accelerator(), aux_loss_enabled=False, use_vllm=False,
                        model=SimpleNamespace(training=False), current_gradient_accumulation_steps=1,
                        _metrics=defaultdict(lambda: defaultdict(list)), max_completion_length=10,
                        importance_sampling_level="token", beta=0.0, loss_type="grpo", epsilon_low=eps,
                        epsilon_high=eps, top_entropy_quantile=1.0, off_policy_mask_threshold=None,
                        _entropy_bonus_enabled=False, entropy_coef=0.0, use_adaptive_entropy=False)
    for k, v in options.items():
        setattr(t, k, v)
    t._entropy_bonus_enabled = bool(t.entropy_coef)
    t.get_high_entropy_mask = lambda *a: trainer_cls.get_high_entropy_mask(t, *a)
    t.get_off_policy_mask = trainer_cls.get_off_policy_mask
    t._get_per_token_logps_and_entropies = lambda *a, **k: (logp, entropies, None)
    inputs = {"prompt_ids": torch.zeros(2, 1, dtype=torch.long), "prompt_mask": torch.ones(2, 1),
              "completion_ids": torch.zeros(2, 3, dtype=torch.long), "completion_mask": mask.float(),
              "advantages": adv, "old_per_token_logps": old, "num_items_in_batch": torch.tensor(5.0)}
    return trainer_cls._compute_loss(t, None, inputs)


OLD_DRIFTED = torch.tensor([[0.1, -0.2, 0.0], [0.3, 0.1, -0.1]])  # pi_old != pi, for the ratios and the mask


@pytest.mark.parametrize("trl_options, ours", [
    (dict(loss_type="grpo"), dict(loss_type="grpo")),
    (dict(loss_type="dapo", epsilon_high=0.28), dict(loss_type="dapo", clip_eps_high=0.28, num_items_in_batch=5)),
    (dict(loss_type="grpo", importance_sampling_level="sequence"), dict(importance_sampling_level="sequence")),
    (dict(loss_type="cispo", epsilon_high=1.2), dict(loss_type="cispo", clip_eps_high=1.2, num_items_in_batch=5)),
    (dict(loss_type="sapo"), dict(loss_type="sapo")),
    (dict(loss_type="sapo", sapo_temperature_pos=2.0, sapo_temperature_neg=0.5),
     dict(loss_type="sapo", sapo_temperature_pos=2.0, sapo_temperature_neg=0.5)),
    (dict(loss_type="grpo", delta=1.1), dict(delta=1.1)),
    (dict(loss_type="bnpo", top_entropy_quantile=0.4), dict(loss_type="bnpo", top_entropy_quantile=0.4)),
    (dict(loss_type="grpo", off_policy_mask_threshold=0.05), dict(off_policy_mask_threshold=0.05)),
    (dict(loss_type="dr_grpo", entropy_coef=0.1, top_entropy_quantile=0.6),
     dict(loss_type="dr_grpo", max_completion_length=10, entropy_coef=0.1, top_entropy_quantile=0.6)),
    (dict(loss_type="dapo", importance_sampling_level="sequence", off_policy_mask_threshold=0.0),
     dict(loss_type="dapo", importance_sampling_level="sequence", off_policy_mask_threshold=0.0, num_items_in_batch=5)),
])
def test_each_option_equals_trls_own_loss(trl_options, ours):
    logp = (LOGP + 0.0).requires_grad_(True)
    theirs = trl_loss(logp, OLD_DRIFTED, ADV, MASK, ENT, **trl_options)
    (g_theirs,) = torch.autograd.grad(theirs, logp)
    mine, _ = policy_loss(logp, OLD_DRIFTED, ADV, MASK, entropies=ENT, **ours)
    (g_mine,) = torch.autograd.grad(mine, logp)
    assert torch.allclose(mine, theirs, atol=1e-6), (float(mine), float(theirs))
    assert torch.allclose(g_mine * MASK, g_theirs * MASK, atol=1e-6)


# ----------------------------------------------- in the trainer: DAPO's sampling, truncation

def _train(**kw):
    from toyds.core.model import GPT, make_config
    from toyds.rl.grpo import GRPOConfig, train_grpo
    from toyds.tasks.arithmetic import sample_problems

    fn = kw.pop("_fn", _parity)
    torch.manual_seed(0)
    model = GPT(make_config("tiny"))
    cfg = GRPOConfig(**{**dict(steps=2, prompts_per_step=4, group_size=4, max_new_tokens=8, lr=1e-3, beta=0.0), **kw})
    history = train_grpo(model, sample_problems(64, digits=(1, 2), seed=0), cfg, reward_fns=[fn], progress=False)
    return model, history


def _parity(completions, **_):
    """Some spread in most groups: 1 for an even number of characters."""
    return [float(len(c) % 2 == 0) for c in completions]


def _by_answer(completions, answer, **_):
    """No spread in any group: the reward depends on the problem only."""
    return [float(a % 2 == 0) for a in answer]


def test_dynamic_sampling_trains_only_groups_with_a_spread_and_counts_the_extra_rollouts():
    _, history = _train(dynamic_sampling=True, _fn=_parity)
    for row in history:
        assert row["extra_rollouts"] % 4 == 0 and row["extra_rollouts"] <= 4 * 4 * 4
        assert row["trained_zero_signal_share"] == 0.0 or row["extra_rollouts"] == 4 * 4 * 4
    _, plain = _train(_fn=_parity)
    assert all(r["extra_rollouts"] == 0 for r in plain)


def test_dynamic_sampling_gives_up_after_max_extra_rounds():
    _, history = _train(dynamic_sampling=True, max_extra_rounds=2, _fn=_by_answer)
    # every group is all-equal: 2 extra rounds of 4 prompts x 4 samples each, then train on what there is
    assert [r["extra_rollouts"] for r in history] == [2 * 4 * 4] * 2
    assert all(r["trained_zero_signal_share"] == 1.0 for r in history)


def test_masked_truncated_completions_teach_nothing():
    from toyds.core.model import GPT, make_config

    torch.manual_seed(0)
    start = GPT(make_config("tiny"))  # the weights _train starts from
    masked, h = _train(max_new_tokens=2, mask_truncated_completions=True)
    assert h[0]["truncated_share"] == 1.0  # 2 tokens: no completion reaches <eos>
    assert all(torch.equal(a, b) for a, b in zip(start.parameters(), masked.parameters()))
    unmasked, _ = _train(max_new_tokens=2)
    assert not all(torch.equal(a, b) for a, b in zip(start.parameters(), unmasked.parameters()))


@pytest.mark.parametrize("kw, match", [
    (dict(importance_sampling_level="seq"), "importance_sampling_level must be one of"),
    (dict(top_entropy_quantile=0.0), "top_entropy_quantile must be in \\(0, 1\\], got 0.0"),
    (dict(delta=0.9), "delta must be None or > 1"),
    (dict(sapo_temperature_neg=0), "sapo_temperature_neg must be > 0, got 0"),
    (dict(loss_type="gspo"), "loss_type must be one of"),
])
def test_config_names_a_bad_family_setting(kw, match):
    from toyds.rl.grpo import GRPOConfig

    with pytest.raises(ValueError, match=match):
        GRPOConfig(**kw)
