import pytest
import torch

from toyds.core.model import GPT, GPTConfig, make_config
from toyds.core.rope import apply_rope, rope_tables
from toyds.core.sampling import left_pad


def tiny(**kw):
    torch.manual_seed(0)
    return GPT(make_config("tiny", **kw))


def test_logits_shape():
    m = tiny()
    assert m(torch.randint(0, 53, (3, 17))).shape == (3, 17, 53)


def test_dense_param_count_by_hand():
    m = tiny()  # V=53, D=64, H=192, 2 layers
    V, D, H, L = 53, 64, 192, 2
    per_block = 3 * D * D + D * D + 3 * D * H + 2 * D  # wqkv, wo, w1/w2/w3, two norms
    assert m.params_total() == V * D + L * per_block + D  # tied embedding, final norm
    assert m.params_active() == m.params_total()


def test_causal_future_tokens_do_not_change_past_logits():
    m = tiny()
    x = torch.randint(0, 53, (2, 12))
    y = x.clone()
    y[:, 8:] = torch.randint(0, 53, (2, 4))
    assert torch.allclose(m(x)[:, :8], m(y)[:, :8], atol=1e-6)


def test_rope_scores_depend_only_on_relative_position():
    cos, sin = rope_tables(8, 32, 10000.0)
    q, k = torch.randn(8), torch.randn(8)

    def score(m, n):
        return apply_rope(q, cos[m], sin[m]) @ apply_rope(k, cos[n], sin[n])

    assert torch.allclose(score(5, 2), score(20, 17), atol=1e-5)
    assert not torch.allclose(score(5, 2), score(5, 3), atol=1e-3)


def test_left_padding_gives_the_unpadded_logits():
    m = tiny()
    a, b = [1, 5, 6, 7, 8], [1, 9, 10]
    ids, mask = left_pad([a, b], 0, "cpu")
    out = m(ids, pad_mask=mask)
    assert torch.allclose(out[1, 2:], m(torch.tensor([b]))[0], atol=1e-5)
    assert torch.allclose(out[0], m(torch.tensor([a]))[0], atol=1e-5)


@pytest.mark.parametrize("ffn", ["dense", "moe"])
def test_kv_cache_logits_match_full_recompute(ffn):
    m = tiny(ffn=ffn).eval()
    x = torch.randint(3, 53, (2, 10))
    full = m(x)
    caches = m.new_caches(2, 10)
    steps = [m(x[:, :4], caches=caches)]  # prefill 4 positions, then one at a time
    steps += [m(x[:, t : t + 1], caches=caches, start=t) for t in range(4, 10)]
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)


def test_moe_model_counts_active_below_total():
    m = tiny(ffn="moe", moe=dict(n_experts=8, top_k=2, n_shared_experts=1))
    dense = tiny()
    assert m.params_total() > dense.params_total()
    # each expert is H / (k + shared) wide, so active ~ dense (plus the small gate)
    assert abs(m.params_active() - dense.params_active()) / dense.params_active() < 0.02


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(dim=60, n_head=4), "must split into n_head=4 heads of even size"),
        (dict(ffn="sparse"), "ffn must be 'dense' or 'moe'"),
        (dict(ffn="moe"), "needs a MoEConfig"),
        (dict(n_layer=0), "n_layer must be a positive integer, got 0"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kw)


def test_unknown_preset_and_too_long_sequence():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        make_config("huge")
    with pytest.raises(ValueError, match="exceeds block_size=128"):
        tiny()(torch.zeros(1, 129, dtype=torch.long))
