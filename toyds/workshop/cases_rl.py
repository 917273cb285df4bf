"""The cases of the workshop's R1 exercises: advantages, grpo_loss, accuracy_reward, kd_loss.

Each function returns the cases of one exercise (registered in toyds/workshop/exercises.py):

    advantages         toyds.rl.grpo_loss.group_advantages            A_i = (r_i - mean_g) / (std_g + eps)
    grpo_loss          toyds.rl.grpo_loss.kl_k3, policy_loss           clipped surrogate + beta k3 KL
    accuracy_reward    toyds.rl.rewards.accuracy_reward           one plain answer block, or nothing
    kd_loss            toyds.distill.losses.kd_loss                   tau^2 KL(P || Q) or KL(Q || P) or JSD

Each list starts from an input worked by hand and adds one rule a case; the hacks
of accuracy_reward are the ways a policy could earn a reward without the answer.
The policy_loss and kd_loss cases also compare the gradient, since a loss with the
right value and the wrong gradient trains the wrong thing. The Case type and the
helpers are in toyds/workshop/cases_base.py.
"""

from __future__ import annotations

import math
import time

import torch

from toyds.workshop.cases_base import Case, _grads, _seeded, _tshow, t

# --------------------------------------------------------------- advantages


def _advantages_cases() -> list[Case]:
    nan = math.nan

    def case(name, rewards, G, hint, scale=None):
        kw = {} if scale is None else {"scale": scale}
        shown = f"group_advantages({_tshow(rewards)}, group_size={G}{'' if scale is None else f', scale={scale!r}'})"
        return Case(name, shown, lambda fn: fn(rewards.clone(), G, **kw), hint)

    return [
        case("one group of four", t(1, 0, 1, 0), 4,
             "A_i = (r_i - mean of the group) / (std of the group + eps). The std is the sample std, "
             "with Bessel's correction (divide by G - 1, as torch.std does by default)."),
        case("two groups: each is its own baseline", t(1, 1, 0, 1, 0, 0, 0, 1), 4,
             "Rewards come as N / G consecutive groups: view them as (N / G, G) and take the mean and std "
             "along the group axis (dim=1), not over the whole batch. Return shape (N,)."),
        case("a group of equal rewards teaches nothing", t(1, 1, 1, 1, 0, 1, 0, 1), 4,
             "When a group's rewards are all equal, r - mean = 0 and std = 0: 0 / (0 + eps) = 0. "
             "Add eps to the std; dividing by the std alone gives 0 / 0 = NaN."),
        case("scale='none' only centres (Dr. GRPO)", t(2, 0, 1, 1), 2,
             "scale='none': A_i = r_i - mean of its group, with no division at all.", scale="none"),
        case("scale='batch': one std for the whole batch", t(1, 0, 0, 0, 1, 1, 1, 0), 4,
             "scale='batch' divides by the std of all N rewards, but still subtracts each group's own mean.",
             scale="batch"),
        case("an unscored (NaN) reward", t(1, nan, 0, 1), 4,
             "A NaN reward (no reward function could score the row) is left out of its group's mean and std "
             "(torch.nanmean; count only the scored rows for the std), and its advantage is 0 "
             "(torch.nan_to_num)."),
        case("integer rewards", torch.tensor([1, 0, 0, 0, 1, 1, 0, 1]), 4,
             "Rewards may arrive as integers: convert them to float first (.float()), or the mean is "
             "truncated (or refused)."),
    ]


# ---------------------------------------------------------------- grpo_loss


def _grpo_cases() -> list[Case]:
    def kl_case(name, logp, ref, hint):
        return Case(name, f"kl_k3({_tshow(logp)}, {_tshow(ref)})", lambda fn: fn(logp.clone(), ref.clone()), hint,
                    function="kl_k3")

    B_mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    base = torch.tensor([[-1.0, -0.5, -2.0], [-0.7, -1.2, -0.3]])

    def loss_case(name, hint, *, shift=0.0, adv=(1.0, -1.0), mask=B_mask, on_policy=True, old_shift=None,
                  ref=None, **kw):
        """logp = base + shift; old_logp = logp.detach() (on-policy) or base + old_shift."""
        advantages = t(*adv)

        def run(fn):
            logp = (base + shift).clone().requires_grad_()
            old = logp.detach() if on_policy else (base + old_shift)
            extra = dict(kw)
            if ref is not None:
                extra["ref_logp"] = ref.clone()
            loss, stats = fn(logp, old, advantages.clone(), mask.clone(), **extra)
            return {"loss": loss.detach(), "gradient of the loss w.r.t. logp": _grads(loss, [logp])[0],
                    "stats": stats}

        old_txt = "logp.detach()" if on_policy else f"logp - {shift - old_shift:g}" if old_shift is not None else ""
        opts = "".join(f", {k}={v!r}" for k, v in kw.items()) + (", ref_logp=..., " if ref is not None else "")
        shown = (f"policy_loss(logp={_tshow(base + shift)}, old_logp={old_txt}, advantages={_tshow(advantages)}, "
                 f"mask={mask.int().tolist()}{opts})")
        return Case(name, shown, run, hint, function="policy_loss")

    ref = torch.tensor([[-1.2, -0.4, -2.5], [-0.9, -1.0, -0.3]])
    return [
        kl_case("k3 is 0 where the two models agree", t(-1.0, -2.0), t(-1.0, -2.0),
                "KL_t = exp(d) - d - 1 with d = ref_logp - logp: 0 when d = 0."),
        kl_case("k3 by hand", t(-1.0, -2.0, -0.1), t(-1.5, -0.5, -3.0),
                "d = ref_logp - logp (the reference's log-prob minus the policy's), then exp(d) - d - 1. "
                "It is never negative."),
        loss_case("on-policy: the ratio is 1, but its gradient is not",
                  "ratio_t = exp(logp - old_logp). With old_logp = logp.detach() the ratio's value is 1, but the "
                  "gradient flows through logp: compute the ratio from logp itself. For 'grpo', average each "
                  "completion over its real tokens (the mask), then average over completions."),
        loss_case("the clip: a ratio of 1.5 with A > 0 earns no more than 1.2", shift=0.0, old_shift=-math.log(1.5),
                  on_policy=False, adv=(1.0, 1.0),
                  hint="surrogate_t = min(ratio_t A, clip(ratio_t, 1 - clip_eps, 1 + eps_high) A), then "
                       "token loss = -surrogate. With A > 0, the clipped term caps the gain at 1.2 A and its "
                       "gradient is 0 there."),
        loss_case("the pessimistic side: a ratio of 1.5 with A < 0 is not clipped", old_shift=-math.log(1.5),
                  on_policy=False, adv=(-1.0, -1.0),
                  hint="min(...) keeps the worse of the two terms: with A < 0 and ratio 1.5, ratio A = -1.5 is "
                       "below 1.2 A = -1.2, so the unclipped term (and its gradient) stays."),
        loss_case("masked tokens count for nothing", old_shift=0.3, on_policy=False,
                  mask=torch.tensor([[1, 0, 0], [1, 1, 0]], dtype=torch.bool),
                  hint="Multiply each token's loss by the mask and divide by the number of real tokens (for "
                       "'grpo', each completion's own count): a masked token must not change the loss."),
        loss_case("the KL leash: beta = 0.1", ref=ref, beta=0.1,
                  hint="token loss = -surrogate_t + beta * KL_t, with KL_t = kl_k3(logp, ref_logp)."),
        loss_case("use_bias_correction_kl weights k3 by the ratio", old_shift=0.2, on_policy=False, ref=ref, beta=0.1,
                  use_bias_correction_kl=True,
                  hint="With use_bias_correction_kl=True the KL term is beta * KL_t * ratio_t."),
        loss_case("clip-higher: clip_eps_high = 0.28", old_shift=-math.log(1.25), on_policy=False, adv=(1.0, 1.0),
                  clip_eps_high=0.28,
                  hint="The upper bound is 1 + clip_eps_high when it is given (DAPO's clip-higher), else "
                       "1 + clip_eps; the lower bound is always 1 - clip_eps."),
        loss_case("loss_type='bnpo': one mean over the batch's tokens", old_shift=0.2, on_policy=False,
                  loss_type="bnpo",
                  hint="'bnpo': sum(token_loss * mask) / sum(mask), one mean over every real token, so a long "
                       "completion weighs more than a short one."),
        loss_case("loss_type='dr_grpo': a constant denominator", old_shift=0.2, on_policy=False, loss_type="dr_grpo",
                  max_completion_length=4,
                  hint="'dr_grpo': sum(token_loss * mask) / (rows x max_completion_length)."),
        loss_case("loss_type='dapo': the generation batch's tokens", old_shift=0.2, on_policy=False, loss_type="dapo",
                  num_items_in_batch=10.0, num_processes=2,
                  hint="'dapo': sum(token_loss * mask) / (num_items_in_batch / num_processes)."),
    ]

# ---------------------------------------------------------- accuracy_reward


def _accuracy_cases() -> list[Case]:
    think = "<think>7+9=16;4+8+1=13;3+5+1=9;so 936</think>"

    def case(name, completion, answer, hint):
        shown = f"accuracy_reward({completion!r}, {answer!r})"
        return Case(name, shown, lambda fn: fn(completion, answer), hint)

    def huge(fn):
        text = "<answer>" + "9" * 1_000_000 + "</answer>"
        t0 = time.perf_counter()
        r = fn(text, 936)
        return {"reward": r, "took under a second": time.perf_counter() - t0 < 1.0}

    return [
        case("an honest worked answer", f"{think}<answer>936</answer><eos>", 936,
             "Find the one <answer>...</answer> block, strip the whitespace around its content, and compare that "
             "text with the truth written as Python prints it (str(answer))."),
        case("right, with no thinking: accuracy does not ask for it", "<answer>936</answer><eos>", 936,
             "Accuracy checks the answer only; thinking is the format reward's business."),
        case("well formed but wrong", f"{think}<answer>935</answer><eos>", 936,
             "Compare the answer with the truth: 935 is not 936."),
        case("spaces around the answer are fine", "<answer> 85 </answer><eos>", 85,
             "Strip ASCII whitespace (space, tab, newline, return) around the answer before comparing."),
        case("a negative answer", "<answer>-12</answer><eos>", -12,
             "A plain integer may start with one '-': -12 is spelled '-12'."),
        case("the truth may come as a str", "<answer>936</answer>", "936",
             "The truth is an int or a str like '936'; compare spellings, so turn an int into its str."),
        case("hack: two answer blocks, one right", "<answer>935</answer><answer>936</answer><eos>", 936,
             "Rule 1: exactly one <answer> and one </answer>. Several blocks would let a policy hedge."),
        case("hack: several numbers in one block", "<answer>935 936 937</answer><eos>", 936,
             "The content must be one plain integer: digits only (and one leading '-'), no spaces inside."),
        case("hack: the answer only in the thinking", f"{think}<eos>", 936,
             "No answer block, no credit: a number written while thinking is not an answer."),
        case("hack: the answer inside an unclosed <think>", "<think>7+8=15;so <answer>85</answer></think><eos>", 85,
             "Rule 4: if a <think> opens before <answer>, its </think> must come before <answer> too; an answer "
             "inside the thinking earns nothing."),
        case("hack: text after </answer>", "<answer>85</answer> or 86<eos>", 85,
             "Rule 3: after </answer> only whitespace and at most one <eos>; more text is a second answer."),
        case("hack: the answer after <eos>", "<eos><answer>85</answer>", 85,
             "Rule 5: nothing after the model's <eos> is its text: an <eos> before <answer> means no answer."),
        case("hack: a tag nested in the answer", "<answer><think>85</answer><eos>", 85,
             "Rule 2: no tag inside the answer block."),
        case("hack: Arabic-Indic digits", "<answer>٨٥</answer><eos>", 85,
             "Only ASCII 0-9 count: int('٨٥') is 85 and '٨٥'.isdigit() is True, so never use int() or isdigit(); "
             "check each character against '0123456789'."),
        case("hack: '+2776' is a second spelling", "<answer>+2776</answer><eos>", 2776,
             "One spelling per number, the one Python prints: no '+', no leading zeros, no '_', no '.0'."),
        case("hack: '2776.0'", "<answer>2776.0</answer><eos>", 2776,
             "float('2776.0') == 2776, but the rule compares spellings: '2776.0' is not '2776'."),
        case("hack: a leading zero", "<answer>085</answer><eos>", 85,
             "'085' is a second spelling of 85: refuse leading zeros (but '0' itself is fine)."),
        case("hack: '1_000'", "<answer>1_000</answer><eos>", 1000, "int('1_000') is 1000; the rule wants '1000'."),
        case("not a str at all", None, 85, "The reward is total: anything that is not a str scores 0.0, never raises."),
        Case("hack: a million-digit answer", "accuracy_reward('<answer>' + '9' * 1_000_000 + '</answer>', 936)", huge,
             "Refuse answers longer than max_digits (64) before anything else: Python's int() refuses strings of "
             "over 4300 digits (ValueError), and a slow check is a denial of service."),
    ]


# ------------------------------------------------------------------ kd_loss


def _kd_cases() -> list[Case]:
    def case(name, s, te, mask, hint, teacher_grad=False, **kw):
        def run(fn):
            student = s.clone().requires_grad_()
            teacher = te.clone().requires_grad_(teacher_grad)
            loss = fn(student, teacher, mask.clone(), **kw)
            gs, gt = _grads(loss, [student, teacher])
            out = {"loss": loss.detach(), "gradient w.r.t. the student's logits": gs}
            if teacher_grad:  # a teacher that requires grad (a model being fine-tuned elsewhere)
                out["the teacher gets a gradient"] = bool((gt != 0).any())
            return out

        opts = "".join(f", {k}={v!r}" for k, v in kw.items())
        shown = f"kd_loss(student={_tshow(s)}, teacher={_tshow(te)}, mask={mask.int().tolist()}{opts})"
        return Case(name, shown, run, hint)

    one = torch.ones(1, 1, dtype=torch.bool)
    S = t(2.0, 0.5, -1.0).view(1, 1, 3)
    T = t(1.0, 1.5, -0.5).view(1, 1, 3)
    g = _seeded(1)
    Sb, Tb = torch.randn(2, 3, 5, generator=g), torch.randn(2, 3, 5, generator=g) * 2
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    Sn, Tn = Sb.clone(), Tb.clone()
    Sn[~mask], Tn[~mask] = math.nan, math.inf  # padding may hold anything
    Tz = t(1.0, -math.inf, 0.5).view(1, 1, 3)
    return [
        case("the same logits: no divergence", S, S, one,
             "KL(P || P) = 0. Compute both distributions with log_softmax and the divergence from their "
             "log-probabilities."),
        case("forward KL by hand", S, T, one,
             "forward: KL(P || Q) = sum_v P_v (log P_v - log Q_v), with P = softmax(teacher) and "
             "Q = softmax(student)."),
        case("reverse KL is not the forward one", S, T, one,
             "reverse: KL(Q || P) = sum_v Q_v (log Q_v - log P_v): the student's distribution weighs the sum.",
             kind="reverse"),
        case("temperature 2: soften both, then multiply by tau^2", S, T, one,
             "Divide both logits by the temperature tau before log_softmax, and multiply the mean divergence "
             "by tau ** 2.", temperature=2.0),
        case("the mean over unmasked positions only", Sb, Tb, mask,
             "Average the per-position divergence over the positions where mask is True (sum / their count)."),
        case("padding may hold NaN and inf", Sn, Tn, mask,
             "Select the unmasked positions first (logits[mask]) and compute only on them: NaN * 0 is still NaN."),
        case("the teacher is not trained", S, T, one,
             "Detach the teacher's logits (teacher_logits.detach()): only the student learns.", teacher_grad=True),
        case("a zero probability: 0 log 0 = 0", S, Tz, one,
             "Where P_v = 0 the term P_v (log P_v - log Q_v) is 0 by convention, but torch computes 0 * -inf = "
             "NaN: keep only the terms where P_v > 0 (torch.where does it without breaking the gradient)."),
        case("jsd with beta 0.5", S, T, one,
             "jsd: M = beta P + (1 - beta) Q (mix probabilities: log M = logaddexp(log beta + log P, "
             "log(1 - beta) + log Q)), then beta KL(P || M) + (1 - beta) KL(Q || M).", kind="jsd", beta=0.5),
        case("logits of size 1e4", S * 5000, T * 5000, one,
             "exp(1e4) overflows: log_softmax subtracts the largest logit first, softmax().log() does not."),
    ]
