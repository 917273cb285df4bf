import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from toyds.core.model import GPT, make_config
from toyds.train import checkpoint, files
from toyds.train.checkpoint import load_checkpoint, save_checkpoint


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


# ------------------------------------------------ what a save may replace
# Stand-ins made in tmp_path: no test here touches a real device.


def test_a_save_replaces_nothing_but_a_toyds_checkpoint(tmp_path):
    m = models()[0]
    target = tmp_path / "target.pt"
    target.write_text("my notes\n")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link.pt").symlink_to(target)
    (tmp_path / "dir.pt").mkdir()
    cases = {"fifo": "a FIFO", "link.pt": "a symbolic link", "dir.pt": "a directory"}
    for name, what in cases.items():
        for force in (False, True):  # force never overrides these
            with pytest.raises(ValueError, match=f"refusing to save a checkpoint over {tmp_path / name}: it is {what}"):
                save_checkpoint(tmp_path / name, m, force=force)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode) and (tmp_path / "link.pt").is_symlink()
    assert target.read_text() == "my notes\n" and (tmp_path / "dir.pt").is_dir()

    with pytest.raises(ValueError, match=f"refusing to overwrite {target}: it is a regular file but not a toyds"):
        save_checkpoint(target, m)
    assert target.read_text() == "my notes\n"
    save_checkpoint(target, m, force=True)  # a regular file may be forced
    assert load_checkpoint(target)[0].cfg == m.cfg
    save_checkpoint(target, m, meta={"v": 2})  # and a checkpoint replaced without force
    assert load_checkpoint(target)[2] == {"v": 2}


def test_dev_null_is_refused_on_a_stand_in(tmp_path, monkeypatch):
    # The reported case: `--out /dev/null` as root replaced the device. Making a real character
    # device needs root and would be a device; instead `null` is a plain file that lstat reports
    # as a character device (what /dev/null is), so the refusal is tested on the real stat path.
    null = tmp_path / "null"
    null.write_bytes(b"")
    real_lstat = os.lstat

    def lstat(p, *a, **k):
        st = real_lstat(p, *a, **k)
        if os.fspath(p) == os.fspath(null):
            return os.stat_result((stat.S_IFCHR | 0o666,) + tuple(st)[1:])
        return st

    monkeypatch.setattr(checkpoint.os, "lstat", lstat)
    for force in (False, True):
        with pytest.raises(ValueError, match="it is a character device; a checkpoint replaces only a regular file"):
            save_checkpoint(null, models()[0], force=force)
    assert null.read_bytes() == b""


def test_new_checkpoints_get_the_users_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        assert stat.S_IMODE(os.stat(save_checkpoint(tmp_path / "a.pt", models()[0])).st_mode) == 0o644
        os.umask(0o002)
        assert stat.S_IMODE(os.stat(save_checkpoint(tmp_path / "b.pt", models()[0])).st_mode) == 0o664
    finally:
        os.umask(old)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_killed_save_leaves_no_temp_file_for_ever(tmp_path):
    # a real SIGKILL in the middle of torch.save, in a child process
    path = tmp_path / "m.pt"
    child = ("import os, signal, torch, toyds.train.checkpoint as c\n"
             "from toyds.core.model import GPT, make_config\n"
             "def dies(obj, f): f.write(b'x' * 4096); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
             "c.torch.save = dies\n"
             f"c.save_checkpoint({str(path)!r}, GPT(make_config('tiny')))\n")
    assert subprocess.run([sys.executable, "-c", child]).returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and files.TEMP_NAME.fullmatch(left[0])  # the killed save's temp file
    save_checkpoint(path, models()[0])  # the next save to the folder removes it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_only_stale_toyds_temp_files_are_removed(tmp_path):
    dead, alive = dead_pid(), os.getppid()
    stale = tmp_path / f".base.pt.toyds-{dead}.tmp"
    old = tmp_path / f".r1.pt.toyds-{alive}.tmp"  # a live pid, but a day old: the pid was reused
    busy = tmp_path / f".r1.pt.toyds-{alive}.tmp.other"
    keep = [tmp_path / f".student.pt.toyds-{alive}.tmp",  # a save in progress in a live process
            tmp_path / f".base.pt.{dead}.tmp", tmp_path / f"base.pt.toyds-{dead}.tmp",  # not our pattern
            tmp_path / "notes.txt", busy]
    for p in [stale, old, *keep]:
        p.write_text("x")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    (tmp_path / f".dir.toyds-{dead}.tmp").mkdir()  # our pattern, but not a regular file
    save_checkpoint(tmp_path / "m.pt", models()[0])
    assert not stale.exists() and not old.exists()
    assert all(p.exists() for p in keep) and (tmp_path / f".dir.toyds-{dead}.tmp").is_dir()


def test_check_writable_reports_a_bad_folder_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a regular file, not a directory"):
        checkpoint.check_writable(tmp_path / "file" / "sub" / "m.pt")
    assert checkpoint.check_writable(tmp_path / "new" / "dirs" / "m.pt") == tmp_path / "new" / "dirs" / "m.pt"
    assert not (tmp_path / "new").exists()  # checking creates nothing


# --------------------------------------------- malformed files on loading


def test_every_malformed_file_is_one_clear_value_error(tmp_path):
    state = torch.load(save_checkpoint(tmp_path / "m.pt", models()[0]), weights_only=True)
    (tmp_path / "text.pt").write_text("hello world\n")
    (tmp_path / "table.pt").write_text("step,loss\n1,2.5\n")
    cases = {
        "text.pt": "torch.save writes a zip archive and this file is not one \\(it begins b'hello world",
        "table.pt": "torch.save writes a zip archive and this file is not one \\(it begins b'step,loss",
        "list.pt": ([1, 2], "it holds a list, not a dict"),
        "novocab.pt": ({k: v for k, v in state.items() if k != "vocab"}, "it has no 'vocab' entry"),
        "unknown.pt": ({**state, "config": {**state["config"], "colour": "red"}},
                       "its config does not build a model .*the config has the unknown field 'colour'; a GPTConfig has \\['attn'"),
        "vocabtype.pt": ({**state, "vocab": "0123"}, "its 'vocab' entry is a str, expected a list"),
        "dimtype.pt": ({**state, "config": {**state["config"], "dim": "64"}},
                       "its config does not build a model .*GPTConfig.dim must be a positive integer, got '64'"),
        "moe.pt": ({**state, "config": {**state["config"], "ffn": "moe", "moe": {"experts": 4}}},
                   "its config does not build a model \\(ValueError: MoEConfig has no field 'experts'"),
        "weights.pt": ({**state, "model": {"embed.weight": [1.0]}},
                       "its 'model' entry should map names to tensors, but 'embed.weight' does not"),
    }
    for name, case in cases.items():
        if isinstance(case, tuple):
            torch.save(case[0], tmp_path / name)
            case = case[1]
        with pytest.raises(ValueError, match=f"{tmp_path / name} is not a readable toyds checkpoint: {case}"):
            load_checkpoint(tmp_path / name)


def test_changed_weight_bytes_fail_the_checksum(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", models()[0])
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:  # the largest tensor's bytes, found in the file
        biggest = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        start = data.find(z.read(biggest))
    middle = start + biggest.file_size // 2
    data[middle:middle + 64] = b"\xff" * 64  # NaN-ish float32 bytes in the middle of a weight matrix
    (tmp_path / "bad.pt").write_bytes(data)
    with pytest.raises(ValueError, match=f"{tmp_path / 'bad.pt'} is corrupt: its weights' sha256 is [0-9a-f]{{12}}"):
        load_checkpoint(tmp_path / "bad.pt")
    # 64 bytes at the middle of the file, wherever they fall: still one ValueError naming the file
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(range(64))
    (tmp_path / "mid.pt").write_bytes(data)
    with pytest.raises(ValueError, match=str(tmp_path / "mid.pt")):
        load_checkpoint(tmp_path / "mid.pt")


def test_checksum_covers_names_shapes_and_bytes():
    w = {"a": torch.arange(4.0), "b": torch.ones(2, 2)}
    same = checkpoint.weights_checksum({"b": torch.ones(2, 2), "a": torch.arange(4.0)})  # order does not matter
    assert checkpoint.weights_checksum(w) == same
    for other in ({"a": torch.arange(4.0), "c": torch.ones(2, 2)}, {"a": torch.arange(4.0), "b": torch.ones(4)},
                  {"a": torch.arange(4.0), "b": torch.ones(2, 2).double()}, {"a": torch.arange(4.0) + 1e-7,
                                                                             "b": torch.ones(2, 2)}):
        assert checkpoint.weights_checksum(other) != same


def test_a_checkpoint_from_before_checksums_loads_with_a_warning(tmp_path):
    m = models()[0]
    state = torch.load(save_checkpoint(tmp_path / "m.pt", m), weights_only=True)
    old = {k: v for k, v in state.items() if k != "sha256"} | {"format": "toyds-checkpoint-1"}
    torch.save(old, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="old.pt was saved by an older toyds without a checksum"):
        m2, _, _ = load_checkpoint(tmp_path / "old.pt")
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), m2.parameters()))
    checkpoint.check_writable(tmp_path / "old.pt")  # and a save may replace it


def test_an_unusable_device_is_not_called_corrupt(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", models()[0])
    with pytest.raises(ValueError, match="device 'cuda:7' is not usable here .*; try device='cpu'"):
        load_checkpoint(path, "cuda:7")
    with pytest.raises(ValueError, match="device 'toaster' is not usable here"):
        load_checkpoint(path, "toaster")


def test_a_model_with_non_finite_weights_is_never_saved(tmp_path):
    import torch as _torch

    from toyds.core.model import GPT as _GPT
    from toyds.core.model import make_config as _make_config

    _torch.manual_seed(0)
    good = save_checkpoint(tmp_path / "m.pt", _GPT(_make_config("tiny")))
    before = good.read_bytes()
    bad = _GPT(_make_config("tiny"))
    with _torch.no_grad():
        bad.blocks[0].attn.wo.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"refusing to save .*m.pt: the weights blocks.0.attn.wo.weight hold NaN"):
        save_checkpoint(good, bad)
    assert good.read_bytes() == before  # the good checkpoint is untouched


# ------------------------------------------ checkpoints of earlier layouts


@pytest.mark.parametrize("name", ["dense", "moe", "mla_mtp", "dense_int8"])
def test_checkpoints_saved_before_the_layout_still_load_and_compute_the_same(name):
    """Saved by the flat-folder toyds (GPTConfig.mla, MoEConfig.bias_update_speed, ...): today's code loads
    them, translates the old fields, and computes exactly the logits the old code did."""
    data = Path(__file__).parent / "data" / "pre_layout"
    model, _, meta = load_checkpoint(data / f"{name}.pt")
    ref = torch.load(data / "logits.pt", weights_only=True)
    with torch.no_grad():
        assert torch.equal(model.eval()(ref["input"]), ref["logits"][name])
    assert meta["saved_by"].startswith("toyds before the 0.1 layout")
    if name == "moe":  # bias_update_speed=0.002 and seq_aux_alpha=0.001 became the rules' own fields
        layer = model.moe_layers()[0]
        assert layer.cfg.balance_params == {"bias": {"gamma": 0.002}, "seq_aux": {"alpha": 0.001}}
        assert [type(r).__name__ for r in layer.rules] == ["BiasUpdate", "SequenceAuxLoss"]
        assert layer.rules[0].gamma == 0.002 and layer.rules[1].alpha == 0.001
    if name == "mla_mtp":
        assert model.cfg.attn == "mla" and model.cfg.attn_config.q_lora_rank == 6 and model.cfg.mtp_depth == 1
