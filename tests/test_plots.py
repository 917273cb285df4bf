import pytest

from toyds.experiment import plots

HIST = {"rules": [{"step": s, "reward": s / 10} for s in range(1, 11)]}


def test_text_series_samples_evenly_and_keeps_the_ends():
    line = plots.text_series(HIST, "reward", points=4)
    assert line.split() == ["rules", "reward", "1:0.10", "4:0.40", "7:0.70", "10:1.00"]


def test_text_heatmap_by_hand():
    out = plots.text_heatmap([[0.5, 0.25], [1.0, 0.0]], ["tag", "digit"], ["e0", "e1"])
    # a 12-character label column, then 6 characters per expert column
    assert out.splitlines() == [" " * 12 + "    e0    e1", "tag" + " " * 9 + "  0.50  0.25", "digit" + " " * 7 + "  1.00  0.00"]


def test_pictures_are_png_files_when_matplotlib_is_there(tmp_path):
    pytest.importorskip("matplotlib")
    paths = [
        plots.rl_curves({"a": [{"step": 1, "reward": 0, "accuracy": 0, "format_rate": 0, "mean_length": 1},
                               {"step": 2, "reward": 1, "accuracy": 1, "format_rate": 1, "mean_length": 2}]},
                        tmp_path / "rl.png"),
        plots.expert_load([0, 10], [[0.5, 0.5], [0.7, 0.3]], tmp_path / "load.png"),
        plots.heatmap([[0.5, 0.5]], ["tag"], ["e0", "e1"], tmp_path / "heat.png"),
        plots.bars({"a": 0.5, "b": 0.9}, tmp_path / "bars.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
