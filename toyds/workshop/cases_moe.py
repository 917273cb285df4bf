"""The cases of the workshop's V3 exercises: gate, bias_update, all_to_all_counts, mla_absorb.

Each function returns the cases of one exercise (registered in toyds/workshop/exercises.py):

    gate               toyds.moe.gate.route                         bias chooses, does not weight; groups
    bias_update        toyds.moe.balance.bias_update               b_i += gamma sign(mean_load - load_i)
    all_to_all_counts  toyds.parallel.expert_parallel.send_counts       copies per expert, rows per rank
    mla_absorb         toyds.efficient.mla.absorbed_attention            W_UK into the query, W_UV after attending

Each list starts from an input worked by hand; gate, all_to_all_counts and
mla_absorb end on seeded random inputs. The chosen experts are compared as sets
(the order of the K does not matter), and their weights in the same order. The Case type and the helpers are in
toyds/workshop/cases_base.py.
"""

from __future__ import annotations

import torch

from toyds.workshop.cases_base import Case, _raises, _seeded, _tshow, t

# --------------------------------------------------------------------- gate


def _gate_cases() -> list[Case]:
    from toyds.moe.config import MoEConfig

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
             "If W does not divide E, raise a ValueError that says so (toyds.parallel.expert_parallel.local_experts does)."),
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
             "Mask the scores before the softmax: masked_softmax(scores, mask) from toyds.efficient.mla does it.",
             mask="causal"),
        case("a decoding step: 1 query, 5 cached keys", 2, 2, 1, 5, 4, 2, 4, 6,
             "With a cache, S (keys) is longer than T (queries); the last query sees every key.", mask="causal"),
        case("a padding mask", 2, 2, 3, 3, 4, 2, 4, 6,
             "A bool mask (B, 1, T, S) says which keys each query may see; pass it on to masked_softmax.",
             mask="padding"),
    ]
