import math

import pytest
import torch
import torch.nn.functional as F

import toyds.efficient.speculative
from toyds.core.model import GPT, GPTConfig, make_config
from toyds.core.sampling import generate
from toyds.core.tokenizer import Tokenizer
from toyds.efficient.mtp import loss_with_mtp, mtp_logits, mtp_loss
from toyds.efficient.speculative import speculative_generate
from toyds.tasks.arithmetic import sample_problems
from toyds.tasks.arithmetic_traces import build_corpus
from toyds.train.batches import collate, encode_pairs
from toyds.train.checkpoint import load_checkpoint, save_checkpoint
from toyds.train.trainer import make_optimizer

tok = Tokenizer()
PROMPTS = [tok.encode("<bos>12+34="), tok.encode("<bos>7+8="), tok.encode("<bos>1234+5678=")]


def model(depth=2, attn="mha", **kw):
    torch.manual_seed(0)
    return GPT(make_config("tiny", attn=attn, mtp_depth=depth, **kw)).eval()


def no_eos(m):
    """An untrained model may stop at once; forbid <eos> so every row makes all its tokens.
    Patching the head changes generate and speculative_generate alike."""
    head = m.head
    m.head = lambda h: head(h).index_fill(-1, torch.tensor([tok.eos_id]), float("-inf"))
    return m


# ------------------------------------------------------------------------ loss


def reference_mtp_loss(m, x, y, mask, lam):
    """V3 eqs. 21-25, one position at a time: depth k at position i reruns its block on
    positions 0..i (so nothing after i can leak in), predicts token i+k+1, and each
    depth's cross-entropy is an explicit -log softmax averaged over masked targets."""
    B, T = x.shape

    def ce(logits, target):  # -log softmax(logits)[target]
        return -(logits[target] - torch.logsumexp(logits, -1))

    def masked_mean(terms):  # terms: (b, i, value) for targets the mask keeps
        return sum(v for _, _, v in terms) / len(terms)

    h = m.features(x)  # h^0
    logits = m.head(h)
    main = masked_mean([(b, i, ce(logits[b, i], y[b, i])) for b in range(B) for i in range(T) if mask[b, i]])
    depth_losses = []
    for k, module in enumerate(m.mtp, start=1):
        h_next = torch.zeros(B, T - k, m.cfg.dim)
        for i in range(T - k):
            # h'^k_i = M_k [RMSNorm(h^{k-1}_i); RMSNorm(Emb(t_{i+k}))] over positions 0..i
            out = module(h[:, : i + 1], m.embed(x[:, k : k + i + 1]), m.rope_cos[: i + 1], m.rope_sin[: i + 1],
                         "causal")
            h_next[:, i] = out[:, -1]
        # target of depth k at position i: token i+k+1 = y[:, i+k]
        depth_losses.append(masked_mean([(b, i, ce(m.head(h_next[b, i]), y[b, i + k]))
                                         for b in range(B) for i in range(T - k) if mask[b, i + k]]))
        h = h_next
    return main + lam / len(depth_losses) * sum(depth_losses), main, depth_losses


@pytest.mark.parametrize("attn", ["mha", "mla"])
def test_mtp_loss_matches_a_loop_reference(attn):
    m = model(depth=2, attn=attn)
    x, y, mask = collate(encode_pairs([("<bos>12+34=", "<answer>46</answer><eos>"),
                                       ("<bos>7+8=", "<answer>15</answer><eos>")], tok), tok.pad_id)
    got = loss_with_mtp(m, x, y, mask, mtp_lambda=0.3)
    total, main, depths = reference_mtp_loss(m, x, y, mask, 0.3)
    assert torch.allclose(got["main"], main, atol=1e-5)
    assert torch.allclose(got["mtp_1"], depths[0], atol=1e-5) and torch.allclose(got["mtp_2"], depths[1], atol=1e-5)
    assert torch.allclose(got["loss"], total, atol=1e-5)


def test_mtp_loss_by_hand_with_uniform_logits():
    # every logit equal: each cross-entropy is log V, so L = log V + (lambda / D) * D * log V
    V, lam = 53, 0.3
    logits = torch.zeros(2, 6, V)
    mtp = [torch.zeros(2, 5, V), torch.zeros(2, 4, V), torch.zeros(2, 3, V)]
    y, mask = torch.randint(0, V, (2, 6)), torch.ones(2, 6, dtype=torch.bool)
    out = mtp_loss(logits, mtp, y, mask, lam)
    assert math.isclose(out["main"].item(), math.log(V), rel_tol=1e-6)
    assert math.isclose(out["mtp"].item(), lam * math.log(V), rel_tol=1e-6)
    assert math.isclose(out["loss"].item(), (1 + lam) * math.log(V), rel_tol=1e-6)


def test_mtp_loss_weights_depths_by_lambda_over_d():
    # depth 1 perfect (loss ~0), depth 2 uniform (log V): L_MTP = lambda / 2 * log V
    V, lam = 7, 0.5
    y = torch.tensor([[1, 2, 3, 4]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    perfect = F.one_hot(y[:, 1:], V).float() * 1e4  # depth 1 predicts y[:, 1:]
    out = mtp_loss(torch.zeros(1, 4, V), [perfect, torch.zeros(1, 2, V)], y, mask, lam)
    assert out["mtp_1"].item() < 1e-6 and math.isclose(out["mtp"].item(), lam / 2 * math.log(V), rel_tol=1e-5)


def test_depth_k_sees_tokens_up_to_i_plus_k_only():
    m = model(depth=2)
    x = torch.randint(3, 53, (1, 10))
    x2 = x.clone()
    x2[:, 7:] = torch.randint(3, 53, (1, 3))  # change tokens 7.. : depth k at i < 7 - k must not move
    a, b = mtp_logits(m, x, m.features(x)), mtp_logits(m, x2, m.features(x2))
    for k in (1, 2):
        assert torch.allclose(a[k - 1][:, : 7 - k], b[k - 1][:, : 7 - k], atol=1e-6)
        assert not torch.allclose(a[k - 1][:, 7 - k], b[k - 1][:, 7 - k], atol=1e-4)


def test_gradients_reach_the_mtp_modules_and_the_trunk():
    m = model(depth=1).train()
    x, y, mask = collate(encode_pairs([("<bos>12+34=", "<answer>46</answer><eos>")], tok), tok.pad_id)
    loss_with_mtp(m, x, y, mask)["mtp"].backward()
    assert m.mtp[0].eh_proj.weight.grad.abs().sum() > 0 and m.blocks[0].attn.wqkv.weight.grad.abs().sum() > 0


def test_checkpoint_round_trip_keeps_the_mtp_modules(tmp_path):
    m = model(depth=2)
    back, _, _ = load_checkpoint(save_checkpoint(tmp_path / "mtp.pt", m))
    x = torch.randint(3, 53, (2, 9))
    for a, b in zip(mtp_logits(m, x, m.features(x)), mtp_logits(back, x, back.features(x))):
        assert torch.equal(a, b)


# -------------------------------------------------------- speculative decoding


@pytest.mark.parametrize("attn, depth", [("mha", 1), ("mha", 3), ("mla", 2)])
def test_speculative_equals_greedy_batch_of_one(attn, depth):
    m = model(depth, attn)
    for p in PROMPTS:
        ref = generate(m, [p], 25, temperature=0)
        got, stats = speculative_generate(m, [p], 25)
        assert torch.equal(got.sequences, ref.sequences) and got.texts == ref.texts
        assert torch.allclose(got.logprobs, ref.logprobs, atol=1e-5)


@pytest.mark.parametrize("attn", ["mha", "mla"])
def test_speculative_equals_greedy_padded_batch(attn):
    m = no_eos(model(2, attn))
    ref = generate(m, PROMPTS, 30, temperature=0)
    got, _ = speculative_generate(m, PROMPTS, 30)
    assert torch.equal(got.sequences, ref.sequences) and torch.equal(got.pad_mask, ref.pad_mask)
    assert got.texts == ref.texts and torch.allclose(got.logprobs, ref.logprobs, atol=1e-5)


def test_acceptance_counts_add_up():
    m = no_eos(model(3))
    N = 30
    got, s = speculative_generate(m, PROMPTS[:1], N)
    # each round yields its accepted drafts plus one token of the main model; the prefill one more
    assert got.completions.shape[1] == N == 1 + s.rounds + sum(s.accepted)
    assert all(a <= p for a, p in zip(s.accepted, s.proposed))
    assert s.accepted == sorted(s.accepted, reverse=True)  # depth k is kept only if k-1 was
    assert s.proposed[0] in (s.rounds, s.rounds - 1)  # every round drafts, but perhaps a last one with 1 token to go


def oracle(tokens, wrong=False):
    """A drafter that knows the greedy answer (or always misses it)."""

    def draft(model, st, n, n_draft, tk):
        for k in range(1, n_draft + 1):
            t = tokens[0, n + k]
            st.seq[:, n + k] = (t + 1 - 3) % (tok.vocab_size - 3) + 3 if wrong else t  # skip pad/bos/eos ids

    return draft


@pytest.mark.parametrize("wrong", [False, True])
def test_perfect_and_useless_drafters(monkeypatch, wrong):
    m, N, K = no_eos(model(3)), 25, 3
    ref = generate(m, PROMPTS[:1], N, temperature=0)
    monkeypatch.setattr(toyds.efficient.speculative, "draft", oracle(ref.sequences, wrong))
    got, s = speculative_generate(m, PROMPTS[:1], N)
    assert torch.equal(got.sequences, ref.sequences)  # the main model decides, whatever the drafts
    if wrong:
        assert s.accepted == [0, 0, 0] and s.rounds == N - 1
    else:
        assert s.acceptance == [1.0, 1.0, 1.0] and s.rounds == math.ceil((N - 1) / (K + 1))


def test_errors():
    with pytest.raises(ValueError, match="mtp_depth must be an integer >= 0"):
        GPTConfig(mtp_depth=-1)
    with pytest.raises(ValueError, match="this model has mtp_depth=0"):
        speculative_generate(model(0), PROMPTS, 5)
    with pytest.raises(ValueError, match="exceeds the model's block_size=128"):
        speculative_generate(model(1), PROMPTS, 125)
    with pytest.raises(ValueError, match="needs sequences longer than it; got T=2"):
        mtp_logits(model(2), torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, 64))


@pytest.mark.slow
def test_trained_mtp_drafts_are_mostly_accepted_and_rows_stop_at_eos():
    # worked addition traces are predictable: after 150 steps (~15 s) with the MTP loss
    # the depth-1 module guesses most next-next tokens (0.82 when written)
    torch.manual_seed(0)
    m = GPT(make_config("tiny", mtp_depth=2))
    examples = encode_pairs(build_corpus(sample_problems(2000, digits=(1, 2), seed=0), "think"), tok)
    opt = make_optimizer(m, 1e-2, 0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        batch = [examples[i] for i in torch.randint(len(examples), (32,), generator=g)]
        loss = loss_with_mtp(m, *collate(batch, tok.pad_id), mtp_lambda=0.3)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    prompts = [tok.encode(p.prompt()) for p in sample_problems(8, digits=(1, 2), split="test")]
    ref = generate(m, prompts, 40, temperature=0)
    got, s = speculative_generate(m, prompts, 40)
    assert len(set(ref.lengths.tolist())) > 1  # rows stop at <eos> at different steps
    assert torch.equal(got.sequences, ref.sequences) and torch.equal(got.pad_mask, ref.pad_mask)
    assert got.texts == ref.texts and torch.allclose(got.logprobs, ref.logprobs, atol=1e-5)
    assert s.acceptance[0] > 0.5 and s.acceptance[1] <= s.acceptance[0], s
