"""The workshop's exercises: which toyds function each one cuts out, and the cases that check it.

Each exercise is one idea's heart, a pure function of tensors or strings that toyds
itself calls (so a solution drops into the library unchanged). A case is an input
chosen to teach one thing: it runs the participant's function and toyds's own on
the same input and compares what comes back (toyds/workshop.py does the comparing
and the explaining). Expected values always come from the library; the input is
shown as a person would type it, and the hint says what the case is about, never
the code. The stubs are workshop/exercises/NAME.py, the solutions workshop/solutions/.

    advantages         toyds.grpo.group_advantages            A_i = (r_i - mean_g) / (std_g + eps)
    grpo_loss          toyds.grpo.kl_k3, policy_loss           clipped surrogate + beta k3 KL
    gate               toyds.moe.route                         bias chooses, does not weight; groups
    bias_update        toyds.balance.bias_update               b_i += gamma sign(mean_load - load_i)
    accuracy_reward    toyds.rewards.accuracy_reward           one plain answer block, or nothing
    kd_loss            toyds.distill.kd_loss                   tau^2 KL(P || Q) or KL(Q || P) or JSD
    all_to_all_counts  toyds.expert_parallel.send_counts       copies per expert, rows per rank
    mla_absorb         toyds.mla.absorbed_attention            W_UK into the query, W_UV after attending
"""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class Case:
    name: str  # what the case teaches, in a few words
    shown: str  # the input, as a person would type the call
    run: Callable  # fn -> the value to compare (the function's result, perhaps with its gradient)
    hint: str  # what to look at when this case fails; never the code
    function: str | None = None  # which of the exercise's functions (default: the last)
    atol: float = 1e-5
    rtol: float = 1e-4


@dataclass
class Exercise:
    name: str
    title: str  # what it teaches, one line
    functions: tuple[str, ...]  # the functions the participant writes, checked in this order
    mirrors: tuple[str, ...]  # "module.function" in toyds, one per function
    notebook: str  # the notebook that tells its story
    after: str  # said when every case passes: where the solution goes next ({file}: the participant's file)
    make_cases: Callable[[], list[Case]] = field(repr=False, default=list)

    def references(self) -> list[Callable]:
        out = []
        for dotted in self.mirrors:
            module, fn = dotted.rsplit(".", 1)
            out.append(getattr(importlib.import_module(module), fn))
        return out

    def cases(self) -> list[Case]:
        return self.make_cases()


def t(*values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _grads(loss, inputs: list) -> list:
    """d loss / d input for each input, zeros where the loss does not depend on it (e.g. a detached
    input): the checker compares gradients, it trains nothing."""
    out = [torch.zeros_like(x) for x in inputs]
    live = [i for i, x in enumerate(inputs) if x.requires_grad]
    if isinstance(loss, torch.Tensor) and loss.requires_grad and live:
        grads = torch.autograd.grad(loss, [inputs[i] for i in live], allow_unused=True)
        for i, g in zip(live, grads):
            if g is not None:
                out[i] = g
    return out


def _raises(fn, *args, **kwargs):
    """The call's result, or 'raises ValueError' (so a case can ask for an error)."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError) as e:
        return f"raises {type(e).__name__}"


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


def _tshow(x: torch.Tensor) -> str:
    from toyds.workshop import show

    s = show(x)
    return s if x.is_floating_point() else s[:-1] + ", dtype=torch.int64)"


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


# --------------------------------------------------------------------- gate


def _gate_cases() -> list[Case]:
    from toyds.moe import MoEConfig

    def cfg(**kw):
        base = dict(dim=4, n_experts=4, top_k=2, balance="none")
        base.update(kw)
        return MoEConfig(**base)

    def case(name, scores, c, hint, bias=None):
        def run(fn):
            w, i = fn(scores.clone(), c, None if bias is None else bias.clone())
            order = i.argsort(-1)  # compare as sets: the order of the K experts does not matter
            return {"indices (sorted)": i.gather(-1, order), "weights (in the same order)": w.gather(-1, order)}

        opts = ", ".join(f"{k}={getattr(c, k)!r}" for k in ("n_experts", "top_k", "score_func", "n_groups",
                                                             "topk_groups", "route_scale"))
        shown = f"route(scores={_tshow(scores)}, cfg=MoEConfig({opts}), bias={'None' if bias is None else _tshow(bias)})"
        return Case(name, shown, run, hint)

    g = _seeded(0)
    many = torch.rand(16, 8, generator=g)
    many_bias = (torch.rand(8, generator=g) - 0.5) * 0.4
    return [
        case("top-2 of softmax scores, no bias", t(0.1, 0.4, 0.3, 0.2, 0.5, 0.1, 0.1, 0.3).view(2, 4), cfg(),
             "Pick the K highest scores in each row (torch.topk along the last axis); each chosen expert's weight "
             "is its score."),
        case("sigmoid scores are normalised over the chosen K", t(0.9, 0.2, 0.6, 0.7, 0.1, 0.5, 0.4, 0.3).view(2, 4),
             cfg(score_func="sigmoid"),
             "With score_func='sigmoid', divide the chosen weights by their sum: g_i = s_i / sum_{j in topK} s_j. "
             "Softmax scores are used as they are."),
        case("the bias chooses, but does not weight", t(0.4, 0.3, 0.2, 0.1).view(1, 4), cfg(),
             "Add the bias to the scores to *choose* (topk of scores + bias), then take the weights from the "
             "unbiased scores (scores.gather(1, indices)).", bias=t(0.0, 0.0, 0.15, 0.0)),
        case("group-limited routing: only the best groups are eligible",
             t(0.9, 0.15, 0.85, 0.1, 0.8, 0.7, 0.05, 0.02).view(1, 8),
             cfg(n_experts=8, top_k=3, n_groups=4, topk_groups=2),
             "With n_groups > 1: view the choice scores as (N, n_groups, E / n_groups), score each group by its "
             "best expert (amax), keep the topk_groups best groups, set every other group's experts to -inf, "
             "then take the top K."),
        case("with a bias, a group scores the sum of its top 2", t(0.9, 0.0, 0.6, 0.5).view(1, 4),
             cfg(top_k=1, n_groups=2, topk_groups=1),
             "When a bias is given (even zeros), a group's score is the sum of its two highest biased scores, "
             "as V3's code does, not its best one.", bias=t(0.0, 0.0, 0.0, 0.0)),
        case("route_scale multiplies the weights", t(0.9, 0.2, 0.6, 0.7).view(1, 4),
             cfg(score_func="sigmoid", route_scale=2.5),
             "Multiply the final weights by cfg.route_scale, after the sigmoid normalisation."),
        case("16 tokens, 8 experts in 4 groups, sigmoid, a bias", many,
             cfg(n_experts=8, top_k=2, n_groups=4, topk_groups=2, score_func="sigmoid"),
             "Every rule at once: choose with scores + bias, groups scored by the sum of their top-2 biased "
             "scores, weights from the unbiased scores, normalised, times route_scale.", bias=many_bias),
    ]


# -------------------------------------------------------------- bias_update


def _bias_cases() -> list[Case]:
    def case(name, bias, load, gamma, hint, extra=None):
        def run(fn):
            b = bias.clone()
            out = fn(b, load.clone(), gamma)
            res = {"new bias": out}
            if extra == "pure":
                res["the bias you were given, after the call"] = b
            if extra == "dtype":
                res["dtype"] = str(out.dtype) if isinstance(out, torch.Tensor) else type(out).__name__
            return res

        return Case(name, f"bias_update(bias={_tshow(bias)}, load={_tshow(load)}, gamma={gamma})", run, hint)

    return [
        case("by hand: busy down, quiet up, average stays", t(0, 0, 0, 0), t(4, 2, 2, 0), 0.1,
             "b_i + gamma * sign(mean_load - load_i): an expert busier than the mean goes down by gamma, a "
             "quieter one up by gamma, one at the mean stays."),
        case("the sign, not the size", t(0, 0, 0, 0), t(1000, 1, 1, 2), 0.01,
             "Only the sign of (mean_load - load_i) counts (torch.sign), never its size: every step is exactly "
             "+gamma, -gamma or 0."),
        case("the bias accumulates", t(0.3, -0.2, 0.0, 0.1), t(1, 5, 3, 3), 0.05,
             "Start from the bias you were given: return bias + step, not the step alone."),
        case("a balanced load moves nothing", t(0.3, -0.2, 0.0, 0.1), t(3, 3, 3, 3), 0.05,
             "When every expert has the mean load, every sign is 0."),
        case("the input is not changed", t(0.3, -0.2, 0.0, 0.1), t(1, 5, 3, 3), 0.05,
             "Return a new tensor and leave `bias` as it was (no +=): the layer writes the result into its "
             "buffer itself.", extra="pure"),
        case("a float64 load keeps a float32 bias", t(0, 0, 0, 0), t(4, 2, 2, 0, dtype=torch.float64), 0.1,
             "The load may be counted in float64: cast the step to the bias's dtype (.to(bias)) so the bias "
             "keeps its dtype.", extra="dtype"),
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


# -------------------------------------------------------- all_to_all_counts


def _counts_cases() -> list[Case]:
    def case(name, experts, E, W, hint):
        def run(fn):
            per_expert, send = fn(experts.clone(), E, W)
            return {"per_expert": per_expert, "send": send,
                    "send is a list of ints": isinstance(send, list) and all(type(v) is int for v in send)}

        return Case(name, f"send_counts({_tshow(experts)}, n_experts={E}, world_size={W})", run, hint)

    g = _seeded(2)
    many = torch.randint(0, 8, (50, 2), generator=g)
    return [
        case("by hand: 3 tokens, top-2, 4 experts on 2 ranks", torch.tensor([[0, 3], [1, 3], [3, 2]]), 4, 2,
             "per_expert_i counts the copies routed to expert i (torch.bincount). Rank r holds experts "
             "r*E/W .. (r+1)*E/W - 1, so send_r is the sum of its block of per_expert."),
        case("one rank holds every expert", torch.tensor([[0, 3], [1, 3], [3, 2]]), 4, 1,
             "With W = 1 every copy goes to rank 0: send = [number of copies]."),
        case("an expert nobody chose", torch.tensor([0, 0, 1]), 4, 2,
             "Use bincount's minlength=E, so experts nobody chose (and ranks nobody sends to) still appear, "
             "with 0."),
        case("one expert per rank", torch.tensor([[2, 1], [2, 0], [3, 2]]), 4, 4,
             "With W = E each rank holds one expert: send equals per_expert."),
        case("a flat list of copies", torch.tensor([3, 3, 1, 0, 2, 3]), 4, 2,
             "experts may come as (A,) or (N, K): flatten first."),
        Case("E must split evenly over the ranks", "send_counts(tensor([0, 1]), n_experts=4, world_size=3)",
             lambda fn: _raises(fn, torch.tensor([0, 1]), 4, 3),
             "If W does not divide E, raise a ValueError that says so (toyds.expert_parallel.local_experts does)."),
        case("50 tokens, top-2, 8 experts on 4 ranks", many, 8, 4,
             "Reshape per_expert to (W, E / W) and sum each row; all_to_all_single takes its split sizes as a "
             "list of Python ints (.tolist())."),
    ]


# --------------------------------------------------------------- mla_absorb


def _mla_cases() -> list[Case]:
    def case(name, B, nh, T, S, dn, dr, dv, c, hint, mask=None, seed=0):
        g = _seeded(seed)
        q_nope, q_pe = torch.randn(B, nh, T, dn, generator=g), torch.randn(B, nh, T, dr, generator=g)
        kv, k_pe = torch.randn(B, S, c, generator=g), torch.randn(B, S, dr, generator=g)
        wkv_b = torch.randn(nh * (dn + dv), c, generator=g) * 0.5
        scale = (dn + dr) ** -0.5
        if mask == "padding":  # (B, 1, T, S): the first key of row 0 is padding
            m = torch.ones(B, 1, T, S, dtype=torch.bool)
            m[0, :, :, 0] = False
        else:
            m = mask
        shown = (f"absorbed_attention(q_nope (B={B}, nh={nh}, T={T}, dn={dn}), q_pe (.., dr={dr}), kv (B, S={S}, "
                 f"c={c}), k_pe (B, S, dr), wkv_b ({nh * (dn + dv)}, {c}) with dv={dv}, softmax_scale={scale:.4f}, "
                 f"mask={'a (B, 1, T, S) padding mask' if mask == 'padding' else repr(mask)})")
        return Case(name, shown, lambda fn: fn(q_nope, q_pe, kv, k_pe, wkv_b, scale, m), hint)

    return [
        case("one head, one query, no mask", 1, 1, 1, 3, 4, 2, 4, 6,
             "wkv_b.view(nh, dn + dv, c) holds [W_UK_i; W_UV_i] per head: the first dn rows are W_UK_i. "
             "scores_s = ((W_UK_i^T q_nope) . c_s + q_pe . k_pe_s) * softmax_scale; softmax over s; "
             "o = W_UV_i (sum_s p_s c_s)."),
        case("several heads share the latents", 2, 3, 1, 4, 4, 2, 4, 6,
             "Each head has its own W_UK_i and W_UV_i; the latents kv and the rotary key k_pe are shared by all "
             "heads (they have no head axis)."),
        case("a value width unlike the key width", 1, 2, 1, 3, 4, 2, 3, 5,
             "W_UV_i is the last dv rows of head i's block, and dv may differ from dn: the output is (B, nh, T, dv)."),
        case("a causal mask over a prompt", 1, 2, 4, 4, 4, 2, 4, 6,
             "Mask the scores before the softmax: masked_softmax(scores, mask) from toyds.mla does it.",
             mask="causal"),
        case("a decoding step: 1 query, 5 cached keys", 2, 2, 1, 5, 4, 2, 4, 6,
             "With a cache, S (keys) is longer than T (queries); the last query sees every key.", mask="causal"),
        case("a padding mask", 2, 2, 3, 3, 4, 2, 4, 6,
             "A bool mask (B, 1, T, S) says which keys each query may see; pass it on to masked_softmax.",
             mask="padding"),
    ]


# ------------------------------------------------------------------ registry

_EX = [
    Exercise("advantages", "the group-relative advantage of GRPO (DeepSeekMath 4.1)", ("group_advantages",),
             ("toyds.grpo.group_advantages",), "notebooks/03_r1_zero.ipynb",
             "Now drive R1-Zero with it: python examples/03_r1_zero.py --advantages {file} (or set ADVANTAGES_FILE "
             "in notebooks/03_r1_zero.ipynb)", _advantages_cases),
    Exercise("grpo_loss", "the clipped GRPO loss with Schulman's k3 KL", ("kl_k3", "policy_loss"),
             ("toyds.grpo.kl_k3", "toyds.grpo.policy_loss"), "notebooks/03_r1_zero.ipynb",
             "Your loss is the one toyds.grpo.train_grpo minimises.", _grpo_cases),
    Exercise("gate", "DeepSeek-V3's gate: the bias chooses, it does not weight; group-limited routing", ("route",),
             ("toyds.moe.route",), "notebooks/01_moe.ipynb",
             "Gate.route in toyds/moe.py calls exactly this function.", _gate_cases),
    Exercise("bias_update", "DeepSeek-V3's auxiliary-loss-free balancing rule", ("bias_update",),
             ("toyds.balance.bias_update",), "notebooks/01_moe.ipynb",
             "BiasUpdate in toyds/balance.py calls exactly this after every optimiser step.", _bias_cases),
    Exercise("accuracy_reward", "a rule-based accuracy reward that cannot be gamed (R1 2.2.2)", ("accuracy_reward",),
             ("toyds.rewards.accuracy_reward",), "notebooks/02_rewards.ipynb",
             "GRPO can now train on it without learning to hack it.", _accuracy_cases),
    Exercise("kd_loss", "forward, reverse and JSD distillation losses", ("kd_loss",), ("toyds.distill.kd_loss",),
             "notebooks/04_distillation.ipynb", "toyds.distill.train_logit_kd minimises exactly this.", _kd_cases),
    Exercise("all_to_all_counts", "the all-to-all send counts of expert parallelism", ("send_counts",),
             ("toyds.expert_parallel.send_counts",), "notebooks/06_scaling_out.ipynb",
             "ExpertParallelMoE.routed sends these sizes before the token rows.", _counts_cases),
    Exercise("mla_absorb", "MLA's absorbed attention: W_UK into the query, W_UV after attending",
             ("absorbed_attention",), ("toyds.mla.absorbed_attention",), "notebooks/08_cheaper_to_run.ipynb",
             "MLA with attn_impl='absorb' computes exactly this, from a cache of c_KV and k^R alone.", _mla_cases),
]
EXERCISES: dict[str, Exercise] = {e.name: e for e in _EX}
