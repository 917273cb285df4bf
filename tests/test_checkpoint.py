import os

import pytest
import torch

from toyds import checkpoint
from toyds.checkpoint import load_checkpoint, save_checkpoint
from toyds.model import GPT, make_config


def models():
    torch.manual_seed(0)
    return GPT(make_config("tiny")), GPT(make_config("tiny", ffn="moe"))


@pytest.mark.parametrize("i", [0, 1])
def test_round_trip_keeps_weights_config_and_meta(tmp_path, i):
    m = models()[i]
    path = save_checkpoint(tmp_path / "m.pt", m, meta={"accuracy": 0.5})
    m2, tok, meta = load_checkpoint(path)
    assert m2.cfg == m.cfg and meta == {"accuracy": 0.5}
    x = torch.randint(0, 53, (1, 9))
    assert torch.equal(m.eval()(x), m2.eval()(x))
    assert tok.vocab_size == 53


def test_crash_mid_save_keeps_the_previous_file(tmp_path, monkeypatch):
    m = models()[0]
    path = save_checkpoint(tmp_path / "m.pt", m, meta={"v": 1})

    def crash(*a, **k):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, m, meta={"v": 2})
    assert load_checkpoint(path)[2] == {"v": 1}
    assert os.listdir(tmp_path) == ["m.pt"]  # no temporary file left behind


def test_corrupt_truncated_and_foreign_files(tmp_path):
    m = models()[0]
    path = save_checkpoint(tmp_path / "m.pt", m)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable toyds checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="format is None"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_mismatched_vocab_and_weights(tmp_path):
    m = models()[0]
    state = torch.load(save_checkpoint(tmp_path / "m.pt", m), weights_only=True)
    torch.save({**state, "vocab": state["vocab"][:-1]}, tmp_path / "v.pt")
    with pytest.raises(ValueError, match="different vocabulary"):
        load_checkpoint(tmp_path / "v.pt")
    torch.save({**state, "config": {**state["config"], "dim": 32, "hidden_dim": 96}}, tmp_path / "w.pt")
    with pytest.raises(ValueError, match="do not match the saved config"):
        load_checkpoint(tmp_path / "w.pt")


def test_loading_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format": checkpoint.FORMAT, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a readable toyds checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
