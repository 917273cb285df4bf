import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toyds.core.model import GPT, make_config
from toyds.core.sampling import generate
from toyds.core.tokenizer import Tokenizer
from toyds.efficient.quantize import (
    Int8Embedding,
    Int8Linear,
    dequantize,
    is_quantized,
    quantize_model,
    quantize_tensor,
    weight_bytes,
)
from toyds.train.checkpoint import load_checkpoint, save_checkpoint

tok = Tokenizer()


def tiny(**kw):
    torch.manual_seed(0)
    return GPT(make_config("tiny", **kw)).eval()


# ------------------------------------------------------------ the equation, by hand


def test_hand_worked_rows():
    w = torch.tensor([[0.5, -1.27, 0.0, 0.3],  # max |w| = 1.27 -> s = 0.01
                      [0.0, 0.0, 0.0, 0.0],  # all zero -> s = 0, q = 0, exact
                      [2.54, 1.0, -0.06, 0.0]])  # max 2.54 -> s = 0.02
    q, s = quantize_tensor(w)
    assert q.dtype == torch.int8 and s.dtype == torch.float32
    assert q.tolist() == [[50, -127, 0, 30], [0, 0, 0, 0], [127, 50, -3, 0]]
    assert torch.allclose(s, torch.tensor([0.01, 0.0, 0.02]))
    # W ~= s q: 0.5 -> 0.01 x 50 = 0.5, -0.06 -> 0.02 x -3 = -0.06
    assert torch.allclose(dequantize(q, s), w, atol=1e-6)


def test_error_is_at_most_half_a_step():
    w = torch.tensor([[1.0, 0.004, -0.5, 0.0123]])  # s = 1/127: 0.004 -> q = round(0.508) = 1
    q, s = quantize_tensor(w)
    assert q.tolist() == [[127, 1, -64, 2]]  # -0.5 * 127 = -63.5 rounds to even: -64
    err = (dequantize(q, s) - w).abs()
    assert (err <= s[:, None] / 2 + 1e-7).all()
    assert err[0, 1] == pytest.approx(abs(1 / 127 - 0.004), abs=1e-7)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(1, 9), st.floats(1e-3, 1e3), st.integers(0, 2**31 - 1))
def test_bound_holds_for_any_matrix(rows, cols, scale, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * scale
    q, s = quantize_tensor(w)
    assert q.abs().max() <= 127
    assert (q.abs().amax(1) == 127).all()  # the largest weight of each row takes the last step
    # |W_ji - s_j q_ji| <= s_j / 2 (plus float32 rounding of W / s)
    assert ((dequantize(q, s) - w).abs() <= s[:, None] * (0.5 + 1e-4)).all()


def test_linear_takes_the_scale_out_of_the_sum():
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 5, bias=True)
    q8 = Int8Linear.from_linear(lin)
    x = torch.randn(3, 8)
    # reference: the dequantised matrix in a plain matmul
    assert torch.allclose(q8(x), x @ dequantize(q8.qweight, q8.scale).T + lin.bias, atol=1e-6)
    # and the float layer is within sum_i |x_i| s_j / 2 of it
    bound = x.abs().sum(1, keepdim=True) * q8.scale / 2
    assert ((q8(x) - lin(x)).abs() <= bound + 1e-6).all()


def test_embedding_rows():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(7, 4)
    q8 = Int8Embedding.from_embedding(emb)
    idx = torch.tensor([[0, 6, 3]])
    assert torch.allclose(q8(idx), q8.weight[idx])
    assert ((q8(idx) - emb(idx)).abs() <= q8.scale[idx, None] / 2 + 1e-7).all()


# ------------------------------------------------------------ a quantised model


@pytest.mark.parametrize("kw", [dict(), dict(attn="mla"), dict(attn="mla", attn_config=dict(attn_impl="naive"), mtp_depth=1),
                                dict(ffn="moe")])
def test_model_logits_close_to_float(kw):
    m = tiny(**kw)
    q = quantize_model(m)
    assert is_quantized(q) and not is_quantized(m)  # the float model is left as it was
    assert not any(isinstance(x, torch.nn.Linear) for x in q.modules())
    x = torch.randint(3, 53, (4, 12))
    with torch.no_grad():
        a, b = m(x), q(x)
    assert (a - b).abs().max() < 0.02 * a.abs().max()
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.9
    assert weight_bytes(q) < 0.3 * weight_bytes(m)


def test_quantised_model_generates_with_the_cache():
    q = quantize_model(tiny(attn="mla"))  # the absorbed path reads wkv_b.weight: the dequantised matrix
    prompts = [tok.encode("<bos>12+34="), tok.encode("<bos>7+8=")]
    a = generate(q, prompts, 10, temperature=0)
    b = generate(q, prompts, 10, temperature=0, use_cache=False)
    assert torch.equal(a.sequences, b.sequences)


def test_save_load_round_trip(tmp_path):
    m = tiny(attn="mla")
    q = quantize_model(m)
    fp = save_checkpoint(tmp_path / "f.pt", m)
    qp = save_checkpoint(tmp_path / "q.pt", q, meta={"from": "f.pt"})
    assert qp.stat().st_size < 0.35 * fp.stat().st_size
    q2, _, meta = load_checkpoint(qp)
    assert meta == {"from": "f.pt"} and is_quantized(q2)
    assert all(q2.state_dict()[k].dtype == v.dtype and torch.equal(q2.state_dict()[k], v)
               for k, v in q.state_dict().items())
    x = torch.randint(3, 53, (2, 9))
    assert torch.equal(q.eval()(x), q2.eval()(x))


# ------------------------------------------------------------ bad input


def test_bad_tensors_are_refused():
    with pytest.raises(ValueError, match="2-D floating-point"):
        quantize_tensor(torch.ones(4))
    with pytest.raises(ValueError, match="2-D floating-point"):
        quantize_tensor(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"holding nan at \(1, 0\)"):
        quantize_tensor(torch.tensor([[1.0, 2.0], [float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="q int8"):
        dequantize(torch.ones(2, 2), torch.ones(2))
    with pytest.raises(ValueError, match="already quantised"):
        quantize_model(quantize_model(tiny()))
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize_model(torch.nn.ReLU())


def _resave(path, out, **change):
    state = torch.load(path, weights_only=True)
    state.update(change)
    torch.save(state, out)
    return out


def test_tampered_checkpoints_are_refused(tmp_path):
    q = quantize_model(tiny())
    path = save_checkpoint(tmp_path / "q.pt", q)
    state = torch.load(path, weights_only=True)
    assert state["quantization"] == "int8"
    with pytest.raises(ValueError, match="quantization is 'int4'"):
        load_checkpoint(_resave(path, tmp_path / "a.pt", quantization="int4"))
    # int8 weights without the entry: they must not be taken for a float model
    del state["quantization"]
    torch.save(state, tmp_path / "b.pt")
    with pytest.raises(ValueError, match="do not match the saved config"):
        load_checkpoint(tmp_path / "b.pt")
    # a float checkpoint whose weights were cast is refused, not silently cast back
    fpath = save_checkpoint(tmp_path / "f.pt", tiny())
    fstate = torch.load(fpath, weights_only=True)
    weights = {k: v.double() for k, v in fstate["model"].items()}
    from toyds.train.checkpoint import weights_checksum

    with pytest.raises(ValueError, match="mis-shaped or mis-typed"):
        load_checkpoint(_resave(fpath, tmp_path / "c.pt", model=weights, sha256=weights_checksum(weights)))
