import pytest
import torch

from toyds.core.model import GPT, make_config
from toyds.core.sampling import completion_logprobs, generate, sample_next
from toyds.core.tokenizer import Tokenizer

tok = Tokenizer()


def model():
    torch.manual_seed(0)
    return GPT(make_config("tiny")).eval()


PROMPTS = [tok.encode("<bos>12+34="), tok.encode("<bos>7+8="), tok.encode("<bos>1234+5678=")]


def test_greedy_with_and_without_cache_agree():
    m = model()
    a = generate(m, PROMPTS, 20, temperature=0)
    b = generate(m, PROMPTS, 20, temperature=0, use_cache=False)
    assert torch.equal(a.sequences, b.sequences) and a.texts == b.texts


def test_batched_equals_one_at_a_time():
    m = model()
    batch = generate(m, PROMPTS, 15, temperature=0)
    for i, p in enumerate(PROMPTS):
        assert generate(m, [p], 15, temperature=0).texts[0] == batch.texts[i]


def test_logprobs_are_those_of_the_model():
    m = model()
    g = generate(m, PROMPTS, 12, temperature=1.0, generator=torch.Generator().manual_seed(1))
    ref = completion_logprobs(m, g.sequences, g.pad_mask, g.prompt_len)  # full recompute
    assert torch.allclose(ref[g.completion_mask], g.logprobs[g.completion_mask], atol=1e-5)
    assert (g.logprobs[~g.completion_mask] == 0).all()


def favour(m, *token_ids):
    """Make the model put almost all its probability on token_ids."""
    bonus = torch.zeros(tok.vocab_size)
    bonus[list(token_ids)] = 100.0
    m.register_forward_hook(lambda mod, inputs, out: out + bonus)
    return m


def test_recomputed_logprobs_by_hand():
    # with every logit equal except the banned <pad> and <bos>, each of the other
    # V - 2 = 51 tokens has probability 1/51
    m = model()
    m.register_forward_hook(lambda mod, inputs, out: torch.zeros_like(out))
    seq = torch.tensor([tok.encode("<bos>1+2=<answer>3")])
    lp = completion_logprobs(m, seq, torch.ones_like(seq, dtype=torch.bool), prompt_len=5)
    assert lp.shape == (1, 2) and torch.allclose(lp, torch.full((1, 2), -torch.log(torch.tensor(51.0))))


def test_stops_at_eos_and_masks_after_it():
    m = favour(model(), tok.eos_id)
    g = generate(m, PROMPTS, 10, temperature=0)
    assert all(t == "<eos>" for t in g.texts)
    assert g.lengths.tolist() == [1, 1, 1] and g.completions.shape[1] == 1


def test_seeded_sampling_repeats_and_temperature_spreads():
    m = model()
    run = lambda s, t: generate(m, PROMPTS * 4, 8, temperature=t, generator=torch.Generator().manual_seed(s)).texts
    assert run(0, 1.0) == run(0, 1.0)
    assert len(set(run(0, 2.0))) > len(set(run(0, 0.0)))


def test_top_k_keeps_only_top_tokens():
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0]]).repeat(200, 1)
    toks, _ = sample_next(logits, 1.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(toks.tolist()) == {1, 2}


def test_pad_and_bos_are_never_sampled():
    m = favour(model(), tok.pad_id, tok.bos_id)
    g = generate(m, PROMPTS, 6, temperature=0)
    assert "<pad>" not in "".join(g.texts) and "<bos>" not in "".join(g.texts)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(temperature=-1), "temperature must be >= 0"),
        (dict(top_k=0), "top_k must be None or >= 1"),
        (dict(max_new_tokens=200), r"exceeds the model's block_size=128"),
    ],
)
def test_bad_arguments(kw, match):
    args = dict(max_new_tokens=5) | kw
    with pytest.raises(ValueError, match=match):
        generate(model(), PROMPTS, **args)
