import copy
import math

import pytest
import torch

import toyds.distill.kd as distill
from toyds.core.model import GPT, make_config
from toyds.core.tokenizer import Tokenizer
from toyds.distill.kd import KDConfig, check_compatible, evaluate_kd, train_logit_kd
from toyds.distill.losses import KINDS, generalized_jsd, kd_loss
from toyds.distill.on_policy import is_on_policy_step, sampled_token_loss
from toyds.tasks.arithmetic import sample_problems
from toyds.tasks.arithmetic_traces import build_corpus
from toyds.train.batches import collate, encode_pairs
from toyds.train.supervised import TrainConfig, train_supervised

# ------------------------------------------------------------ kd_loss by hand

# One position, V = 2, temperature tau = 2: teacher [2 ln 3, 0] / 2 = [ln 3, 0] -> P = [3/4, 1/4];
# student [0, 0] -> Q = [1/2, 1/2]. Each divergence is multiplied by tau^2 = 4.
TEACHER = torch.tensor([[[2 * math.log(3), 0.0]]])  # (1, 1, 2)
STUDENT = torch.zeros(1, 1, 2)
ONE = torch.ones(1, 1, dtype=torch.bool)
# forward KL(P || Q) = 3/4 ln(3/2) + 1/4 ln(1/2)
# reverse KL(Q || P) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3)
# jsd, beta = 1/2: M = [5/8, 3/8]; KL(P || M) = 3/4 ln(6/5) + 1/4 ln(2/3), KL(Q || M) = 1/2 ln(4/5) + 1/2 ln(4/3)
BY_HAND = {
    "forward": 4 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5)),  # 0.52325
    "reverse": 4 * 0.5 * math.log(4 / 3),  # 0.57536
    "jsd": 4 * 0.5 * ((0.75 * math.log(6 / 5) + 0.25 * math.log(2 / 3))
                      + (0.5 * math.log(4 / 5) + 0.5 * math.log(4 / 3))),  # 0.13529
}


@pytest.mark.parametrize("kind", KINDS)
def test_kd_loss_by_hand_with_temperature_two(kind):
    got = kd_loss(STUDENT, TEACHER, ONE, temperature=2.0, kind=kind)
    assert math.isclose(got.item(), BY_HAND[kind], rel_tol=1e-5)


def test_jsd_beta_weights_by_hand():
    # beta = 1/4: M = 1/4 P + 3/4 Q = [9/16, 7/16]
    kl_pm = 0.75 * math.log((3 / 4) / (9 / 16)) + 0.25 * math.log((1 / 4) / (7 / 16))
    kl_qm = 0.5 * math.log((1 / 2) / (9 / 16)) + 0.5 * math.log((1 / 2) / (7 / 16))
    got = kd_loss(STUDENT, TEACHER, ONE, temperature=2.0, kind="jsd", beta=0.25)
    assert math.isclose(got.item(), 4 * (0.25 * kl_pm + 0.75 * kl_qm), rel_tol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_temperature_squared_factor(kind):
    # logits scaled by tau at temperature tau give the same P and Q, so the loss is exactly tau^2 times larger
    torch.manual_seed(0)
    s, t, m = torch.randn(2, 3, 6), torch.randn(2, 3, 6), torch.ones(2, 3, dtype=torch.bool)
    at_one = kd_loss(s, t, m, 1.0, kind)
    assert torch.allclose(kd_loss(3 * s, 3 * t, m, 3.0, kind), 9 * at_one, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_masked_positions_are_ignored_and_averaged_over_the_rest(kind):
    # positions: 0 garbage (masked), 1 the hand case, 2 student == teacher (0), 3 garbage (masked)
    s = torch.tensor([[[1e30, float("nan")], [0.0, 0.0], [1.0, -2.0], [float("inf"), 3.0]]])
    t = torch.tensor([[[float("-inf"), 7.0], [2 * math.log(3), 0.0], [1.0, -2.0], [float("nan"), 0.0]]])
    mask = torch.tensor([[False, True, True, False]])
    got = kd_loss(s, t, mask, 2.0, kind)
    assert math.isclose(got.item(), BY_HAND[kind] / 2, rel_tol=1e-5)  # mean of (hand value, 0)
    assert kd_loss(s, t, torch.zeros_like(mask), 2.0, kind).item() == 0.0  # nothing unmasked: 0, not NaN


@pytest.mark.parametrize("kind", KINDS)
def test_zero_when_student_equals_teacher_positive_otherwise(kind):
    torch.manual_seed(1)
    t, m = torch.randn(3, 5, 8) * 4, torch.rand(3, 5) > 0.3
    assert kd_loss(t.clone(), t, m, 1.5, kind).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(torch.randn(3, 5, 8), t, m, 1.5, kind).item() > 0.01


def _plain_kl(p, q):
    return sum(pv * math.log(pv / qv) for pv, qv in zip(p, q) if pv > 0)


def _plain_softmax(row, T):
    e = [math.exp(v / T) for v in row]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("kind", KINDS)
def test_against_plain_loop(kind):
    torch.manual_seed(2)
    B, T, V, temp, beta = 2, 4, 5, 1.7, 0.3
    s, t = torch.randn(B, T, V, dtype=torch.float64), torch.randn(B, T, V, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0]], dtype=torch.bool)
    total, n = 0.0, 0
    for b in range(B):
        for i in range(T):
            if not mask[b, i]:
                continue
            P, Q = _plain_softmax(t[b, i].tolist(), temp), _plain_softmax(s[b, i].tolist(), temp)
            if kind == "forward":
                d = _plain_kl(P, Q)
            elif kind == "reverse":
                d = _plain_kl(Q, P)
            else:
                M = [beta * p + (1 - beta) * q for p, q in zip(P, Q)]
                d = beta * _plain_kl(P, M) + (1 - beta) * _plain_kl(Q, M)
            total, n = total + temp**2 * d, n + 1
    assert math.isclose(kd_loss(s, t, mask, temp, kind, beta).item(), total / n, rel_tol=1e-5)


def test_stable_and_correct_for_huge_logits():
    # P = [1/2, 1/2, 0], Q = [1/2, 0, 1/2], with log of the "0" = -2e4 - ln 2
    t = torch.tensor([[[1e4, 1e4, -1e4]]])
    s = torch.tensor([[[1e4, -1e4, 1e4]]])
    # forward: 1/2 (ln 1/2 - (-2e4 - ln 2)) = 1e4; reverse is the mirror image
    assert kd_loss(s, t, ONE, 1.0, "forward").item() == pytest.approx(1e4, rel=1e-5)
    assert kd_loss(s, t, ONE, 1.0, "reverse").item() == pytest.approx(1e4, rel=1e-5)
    # jsd(1/2): M = [1/2, 1/4, 1/4], KL(P || M) = KL(Q || M) = 1/2 ln 2
    assert kd_loss(s, t, ONE, 1.0, "jsd").item() == pytest.approx(0.5 * math.log(2), rel=1e-5)
    for kind in KINDS:  # the gradient stays finite too
        s_ = s.clone().requires_grad_(True)
        kd_loss(s_, t, ONE, 1.0, kind).backward()
        assert torch.isfinite(s_.grad).all()
    # logits of size 1e4 at temperature 1e4 are the O(1) case times tau^2 = 1e8
    torch.manual_seed(3)
    a, b, m = torch.randn(2, 3, 7), torch.randn(2, 3, 7), torch.ones(2, 3, dtype=torch.bool)
    for kind in KINDS:
        big = kd_loss(a * 1e4, b * 1e4, m, 1e4, kind)
        assert torch.isfinite(big) and big.item() == pytest.approx(1e8 * kd_loss(a, b, m, 1.0, kind).item(), rel=1e-3)


def test_gradient_reaches_the_student_only_and_matches_by_hand():
    # d/ds [tau^2 KL(P || Q)] = tau (Q - P) per position, / number of unmasked positions
    s = torch.zeros(1, 2, 2, requires_grad=True)
    t = torch.tensor([[[2 * math.log(3), 0.0], [5.0, 1.0]]], requires_grad=True)
    mask = torch.tensor([[True, False]])
    kd_loss(s, t, mask, 2.0, "forward").backward()
    assert t.grad is None  # the teacher is detached
    # Q - P = [1/2 - 3/4, 1/2 - 1/4] = [-1/4, 1/4], times tau = 2; the masked position gets nothing
    assert torch.allclose(s.grad, torch.tensor([[[-0.5, 0.5], [0.0, 0.0]]]), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(kind="kl"), "kind must be one of"), (dict(temperature=0.0), "temperature must be"),
     (dict(temperature=float("inf")), "temperature must be"), (dict(kind="jsd", beta=0.0), "0 < beta < 1"),
     (dict(kind="jsd", beta=1.0), "0 < beta < 1")],
)
def test_kd_loss_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kd_loss(STUDENT, TEACHER, ONE, **kwargs)


def test_kd_loss_shape_errors_and_beta_ignored_outside_jsd():
    with pytest.raises(ValueError, match=r"student \(1, 1, 3\), teacher \(1, 1, 2\)"):
        kd_loss(torch.zeros(1, 1, 3), TEACHER, ONE)
    with pytest.raises(ValueError, match="mask"):
        kd_loss(STUDENT, TEACHER, torch.ones(1, 2, dtype=torch.bool))
    beta_unused = kd_loss(STUDENT, TEACHER, ONE, 2.0, "forward", beta=0.0)
    assert math.isclose(beta_unused.item(), BY_HAND["forward"], rel_tol=1e-5)


# ------------------------------------------------------------ compatibility


def test_check_compatible_names_both_values():
    tiny = GPT(make_config("tiny", block_size=32))
    with pytest.raises(ValueError, match="teacher vocab_size=53, student vocab_size=60"):
        check_compatible(tiny, GPT(make_config("tiny", vocab_size=60, block_size=32)))
    short = GPT(make_config("tiny", block_size=16))
    check_compatible(tiny, short, longest=16)
    with pytest.raises(ValueError, match="student's block_size is 16"):
        check_compatible(tiny, short, longest=20)
    with pytest.raises(ValueError, match="vocab_size"):  # the trainer checks too
        train_logit_kd(GPT(make_config("tiny", vocab_size=60, block_size=32)), tiny, [("<bos>1+1=", "2<eos>")],
                       KDConfig(train=TrainConfig(steps=2, warmup=0)))


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(alpha=1.5), "alpha must be in"), (dict(kind="kl"), "kind must be"), (dict(temperature=0), "temperature"),
     (dict(kind="jsd", beta=1.0), "beta"), (dict(on_policy=2.0), "on_policy must be"),
     (dict(on_policy=True, alpha=0.0), "needs alpha > 0"),
     (dict(on_policy_loss="reinforce"), "on_policy_loss must be one of .*'reinforce'")],
)
def test_kd_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KDConfig(**kwargs)


def test_on_policy_steps_are_spread_evenly():
    assert [is_on_policy_step(s, 0.5) for s in range(4)] == [False, True, False, True]
    assert sum(is_on_policy_step(s, 0.25) for s in range(100)) == 25
    assert all(is_on_policy_step(s, True) for s in range(5)) and not any(is_on_policy_step(s, 0.0) for s in range(5))


# ------------------------------------------- TRL's generalized JSD and the sampled-token form


@pytest.mark.parametrize("beta, kind", [(0.0, "forward"), (0.5, "jsd"), (1.0, "reverse")])
def test_generalized_jsd_reads_beta_as_trl_does(beta, kind):
    # TRL: beta 0 = KL(teacher || student), 1 = KL(student || teacher), no tau^2: BY_HAND / 4 at tau = 2
    got = generalized_jsd(STUDENT, TEACHER, ONE, beta=beta, temperature=2.0)
    assert math.isclose(got.item(), BY_HAND[kind] / 4, rel_tol=1e-5)
    with pytest.raises(ValueError, match=r"beta must be a number in \[0, 1\].*got 1.5"):
        generalized_jsd(STUDENT, TEACHER, ONE, beta=1.5)


def test_generalized_jsd_ignores_masked_positions_and_only_the_student_learns():
    torch.manual_seed(0)
    s, t = torch.randn(1, 3, 4, requires_grad=True), torch.randn(1, 3, 4, requires_grad=True)
    mask = torch.tensor([[True, True, False]])
    junk_s, junk_t = s.detach().clone(), t.detach().clone()
    junk_s[0, 2], junk_t[0, 2] = float("nan"), float("inf")
    got = generalized_jsd(s, t, mask, beta=0.5)
    assert torch.isclose(got, generalized_jsd(junk_s, junk_t, mask, beta=0.5))
    assert torch.isclose(got, generalized_jsd(s[:, :2], t[:, :2], torch.ones(1, 2, dtype=torch.bool), beta=0.5))
    got.backward()
    assert t.grad is None and s.grad[0, :2].abs().sum() > 0 and s.grad[0, 2].abs().sum() == 0


def test_sampled_token_loss_by_hand():
    # teacher P = [3/4, 1/4], student Q = [1/2, 1/2] (temperature 1); the student wrote token 0:
    # r = ln(3/4) - ln(1/2) = ln 1.5; loss = -r ln(1/2) = ln 1.5 ln 2; d loss / d z = -r (onehot_0 - Q)
    s = torch.zeros(1, 1, 2, requires_grad=True)
    t = torch.tensor([[[math.log(3), 0.0]]], requires_grad=True)
    loss = sampled_token_loss(s, t, torch.tensor([[0]]), ONE)
    assert math.isclose(loss.item(), math.log(1.5) * math.log(2), rel_tol=1e-6)
    loss.backward()
    assert torch.allclose(s.grad, -math.log(1.5) * torch.tensor([[[0.5, -0.5]]])) and t.grad is None


def test_sampled_token_gradient_in_expectation_is_the_reverse_kl_gradient():
    # sum over the tokens x the student could write, weighted by Q(x), of the sampled-token gradient
    # equals the gradient of KL(Q || P) (the score-function identity), exactly, for any logits
    torch.manual_seed(1)
    s, t = torch.randn(1, 1, 5, requires_grad=True), torch.randn(1, 1, 5)
    q = torch.softmax(s.detach(), -1)[0, 0]
    expected = torch.zeros(5)
    for x in range(5):
        (g,) = torch.autograd.grad(sampled_token_loss(s, t, torch.tensor([[x]]), ONE), s)
        expected += q[x] * g[0, 0]
    (reverse,) = torch.autograd.grad(kd_loss(s, t, ONE, 1.0, "reverse"), s)
    assert torch.allclose(expected, reverse[0, 0], atol=1e-6)


def test_sampled_token_loss_ignores_masked_positions():
    torch.manual_seed(2)
    s, t = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    tokens, mask = torch.tensor([[1, 2, 99], [0, 3, 99]]), torch.tensor([[True, True, False]] * 2)
    s2 = s.clone()
    s2[:, 2] = float("nan")
    a = sampled_token_loss(s, t, tokens, mask)  # 99 is no token: masked positions are never read
    assert torch.isclose(a, sampled_token_loss(s2, t, tokens, mask))
    assert torch.isclose(a, sampled_token_loss(s[:, :2], t[:, :2], tokens[:, :2], mask[:, :2]))


# ------------------------------------------------------ logit distillation


@pytest.fixture(scope="module")
def setup():
    """A tiny teacher trained briefly on direct answers, and the pairs it was trained on."""
    torch.manual_seed(0)
    teacher = GPT(make_config("tiny", block_size=32))
    pairs = build_corpus(sample_problems(200, digits=(1, 2)), "direct")
    train_supervised(teacher, pairs, TrainConfig(steps=30, batch_size=16, warmup=3))
    return teacher, pairs


def _student(seed, **kw):
    torch.manual_seed(seed)
    return GPT(make_config("tiny", block_size=32, **kw))


def _cfg(steps=20, **kw):
    return KDConfig(train=TrainConfig(steps=steps, batch_size=16, warmup=2), **kw)


@pytest.mark.parametrize("kind", ["forward", "reverse"])
def test_logit_kd_lowers_the_kd_loss(setup, kind):
    teacher, pairs = setup
    student, cfg = _student(1), _cfg(kind=kind, alpha=1.0)
    before = evaluate_kd(student, teacher, pairs[:64], cfg)
    teacher_state = copy.deepcopy(teacher.state_dict())
    h = train_logit_kd(student, teacher, pairs, cfg)
    after = evaluate_kd(student, teacher, pairs[:64], cfg)
    assert after < 0.5 * before, (before, after)
    assert len(h) == 20 and "kd" in h[-1] and not any(r["on_policy"] for r in h)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_state.items())  # teacher untouched


def test_alpha_zero_is_exactly_train_supervised(setup):
    teacher, pairs = setup
    a, b = _student(2), _student(2)
    h = train_logit_kd(a, teacher, pairs, _cfg(steps=8, alpha=0.0))
    train_supervised(b, pairs, _cfg(steps=8).train)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert "kd" not in h[-1] and h[-1]["loss"] == h[-1]["lm"]


def test_alpha_mixes_kd_and_next_token_loss_and_alpha_one_ignores_the_labels(setup):
    # a student that already is the teacher: its next-token loss on the data is far
    # from 0, but pure KD (alpha = 1) has nothing to teach it, so its gradient is ~0
    teacher, pairs = setup
    student = copy.deepcopy(teacher)
    tok = Tokenizer()
    x, y, m = collate(encode_pairs(pairs[:16], tok), tok.pad_id)

    def grad_norm(alpha):
        student.zero_grad()
        loss, stats = distill.off_policy_losses(student, teacher, x, y, m, _cfg(alpha=alpha))
        loss.backward()
        return loss.item(), stats, torch.cat([p.grad.flatten() for p in student.parameters()]).norm().item()

    loss, stats, g1 = grad_norm(1.0)
    assert loss == stats["kd"] == pytest.approx(0.0, abs=1e-6) and stats["lm"] > 0.1 and g1 < 1e-5
    loss, stats, g_mix = grad_norm(0.25)
    # loss = alpha * kd + (1 - alpha) * lm
    assert loss == pytest.approx(0.25 * stats["kd"] + 0.75 * stats["lm"]) and g_mix > 1e-2
    # with a student that differs, alpha = 1 trains on the teacher's distributions alone
    loss, stats = distill.off_policy_losses(_student(5), teacher, x, y, m, _cfg(alpha=1.0))
    assert loss.item() == stats["kd"] > 0.1


def test_on_policy_lowers_the_on_policy_kd(setup):
    teacher, pairs = setup
    student, cfg = _student(3), _cfg(steps=20, on_policy=True, kind="jsd", max_new_tokens=12)
    before = evaluate_kd(student, teacher, pairs[:64], cfg, on_policy=True)
    h = train_logit_kd(student, teacher, pairs, cfg)
    after = evaluate_kd(student, teacher, pairs[:64], cfg, on_policy=True)
    assert after < 0.7 * before, (before, after)
    assert all(r["on_policy"] and "lm" not in r and r["length"] >= 1 for r in h)


def test_sampled_token_on_policy_lowers_the_reverse_kl_on_the_students_own_text(setup):
    teacher, pairs = setup
    student = _student(3)
    cfg = _cfg(steps=20, on_policy=True, on_policy_loss="sampled_token", max_new_tokens=12)
    probe = _cfg(on_policy=True, kind="reverse", max_new_tokens=12)  # the reverse KL on the student's own samples
    before = evaluate_kd(student, teacher, pairs[:64], probe, on_policy=True)
    h = train_logit_kd(student, teacher, pairs, cfg)
    after = evaluate_kd(student, teacher, pairs[:64], probe, on_policy=True)
    assert after < 0.7 * before, (before, after)
    assert all(r["on_policy"] for r in h)


def test_lambda_zero_is_exactly_logit_kd(setup, monkeypatch):
    # GKD's lmbda = 0: no batch is the student's own, so the on-policy settings change nothing and nothing is sampled
    teacher, pairs = setup
    a, b = _student(6), _student(6)
    ha = train_logit_kd(a, teacher, pairs, _cfg(steps=5))
    monkeypatch.setattr(distill, "on_policy_losses", lambda *a, **k: pytest.fail("sampled with on_policy=0"))
    hb = train_logit_kd(b, teacher, pairs, _cfg(steps=5, on_policy=0.0, on_policy_loss="sampled_token",
                                               sample_temperature=0.5))
    assert [r["loss"] for r in ha] == [r["loss"] for r in hb]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_mixed_on_policy_share_and_moe_student(setup):
    teacher, pairs = setup
    student = _student(4, ffn="moe")
    bias = [m.gate.bias.clone() for m in student.moe_layers()]
    h = train_logit_kd(student, teacher, pairs, _cfg(steps=4, on_policy=0.5, alpha=0.5, max_new_tokens=8))
    assert [r["on_policy"] for r in h] == [False, True, False, True]
    assert all(("lm" in r) != r["on_policy"] for r in h)
    assert any(not torch.equal(b, m.gate.bias) for b, m in zip(bias, student.moe_layers()))  # bias rule ran


def test_cached_teacher_gives_the_same_training_as_running_it_every_step():
    import copy

    from toyds.core.model import GPT, make_config
    from toyds.distill.kd import KDConfig, train_logit_kd
    from toyds.train.supervised import TrainConfig

    torch.manual_seed(0)
    teacher = GPT(make_config("tiny", n_layer=1))
    student = GPT(make_config("tiny", n_layer=1))
    pairs = [("<bos>12+9=", "<think>2+9=11;1+0+1=2;so 21</think><answer>21</answer><eos>"),
             ("<bos>3+4=", "<answer>7</answer><eos>"), ("<bos>40+2=", "<answer>42</answer><eos>")]
    train = TrainConfig(steps=4, batch_size=4, warmup=1)
    runs = []
    for cache in (True, False):
        s = copy.deepcopy(student)
        hist = train_logit_kd(s, teacher, pairs, KDConfig(alpha=0.5, temperature=2.0, train=train, cache_teacher=cache))
        runs.append((s, [r["kd"] for r in hist]))
    (a, kd_a), (b, kd_b) = runs
    assert kd_a == pytest.approx(kd_b, rel=1e-5)
    # the cached path differs only by float rounding (log-probabilities vs logits), which Adam can amplify
    assert max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters())) < 1e-4
