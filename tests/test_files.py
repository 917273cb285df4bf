"""toyds/train/files.py: a full disk and a second Ctrl-C leave the old file whole, no temp file, and one sentence."""

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from toyds.cli.main import main
from toyds.core.model import GPT, make_config
from toyds.experiment.output import write_json
from toyds.train import files
from toyds.train.checkpoint import load_checkpoint, save_checkpoint

FULL = "no space left on its disk"


def model(seed=0):
    torch.manual_seed(seed)
    return GPT(make_config("tiny", n_layer=1))


def only(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.fixture
def old(tmp_path):
    path = save_checkpoint(tmp_path / "model.pt", model(0))
    return path, path.read_bytes()


def test_too_little_free_space_is_named_before_writing(old, monkeypatch):
    path, before = old
    monkeypatch.setattr(files.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(files.NoSpaceError, match=rf"cannot save {path}: {FULL} \(needs ~0\.\d MB, 0\.0 MB free\); "
                                                 r"the previous file is unchanged"):
        save_checkpoint(path, model(1))
    assert path.read_bytes() == before and only(path.parent) == ["model.pt"]


def test_a_write_that_fills_the_disk_is_named_and_cleaned_up(old, monkeypatch):
    """torch.save hides ENOSPC under a RuntimeError ('[enforce fail at inline_container.cc:672] ...')."""
    path, before = old

    def full(obj, f):
        f.write(b"PK partial")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 491584 vs 491536") from e

    monkeypatch.setattr(files, "check_free_space", lambda p, n: None)  # the OS could not say
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(files.NoSpaceError) as e:
        save_checkpoint(path, model(1))
    assert str(e.value).startswith(f"cannot save {path}: {FULL} (needs ~0.")
    assert str(e.value).endswith("MB); the previous file is unchanged")
    assert path.read_bytes() == before and only(path.parent) == ["model.pt"]
    load_checkpoint(path)  # the old checkpoint is whole


def test_metrics_json_on_a_full_disk(tmp_path, monkeypatch):
    write_json(tmp_path / "metrics.json", {"a": 1})
    monkeypatch.setattr(files.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.raises(files.NoSpaceError, match=f"cannot save .*metrics.json: {FULL}"):
        write_json(tmp_path / "metrics.json", {"a": 2})
    assert (tmp_path / "metrics.json").read_text() == '{\n  "a": 1\n}' and only(tmp_path) == ["metrics.json"]


def test_a_second_ctrl_c_during_the_cleanup_leaves_no_temp_file(old, monkeypatch):
    path, before = old
    unlink, calls = os.unlink, []

    def interrupted(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # the first Ctrl-C, mid-write

    def unlink_twice(p, *a, **k):
        calls.append(p)
        if len(calls) == 1:
            raise KeyboardInterrupt  # the second Ctrl-C, during the cleanup
        return unlink(p, *a, **k)

    monkeypatch.setattr(torch, "save", interrupted)
    monkeypatch.setattr(files.os, "unlink", unlink_twice)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model(1))
    assert len(calls) == 2 and path.read_bytes() == before and only(path.parent) == ["model.pt"]


def test_the_cli_says_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    out = tmp_path / "full" / "model.pt"
    assert main(["train", "--out", str(out), "--steps", "1", "--problems", "10", "--threads", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"toyds train: error: cannot save {out}: {FULL}") and err.count("\n") == 1


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="mounting a tmpfs needs root on Linux")
def test_a_real_full_disk(tmp_path):
    """A 200 KB tmpfs inside the test's own temp folder: too small for a 0.4 MB checkpoint."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("this machine does not let the tests mount a tmpfs")
    try:
        small = GPT(make_config("tiny", n_layer=1, dim=16, hidden_dim=32))
        first = save_checkpoint(disk / "model.pt", small)  # a few KB: it fits
        before = first.read_bytes()
        with pytest.raises(files.NoSpaceError, match=f"cannot save {disk / 'model.pt'}: {FULL}"):
            save_checkpoint(disk / "model.pt", model(1))
        assert first.read_bytes() == before and only(disk) == ["model.pt"]
    finally:
        subprocess.run(["umount", str(disk)], check=True)
