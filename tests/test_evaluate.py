from toyds.evaluate.accuracy import score, summarise, think_length
from toyds.tasks.arithmetic import Arithmetic, Problem

TASK = Arithmetic(digits=(1, 2))

P1, P2 = Problem(47, "+", 38, 2), Problem(3, "+", 4, 1)


def test_score_and_summary_by_hand():
    texts = [
        "<think>7+8=15;4+3+1=8;so 85</think><answer>85</answer><eos>",  # right, formatted, thinks
        "<answer>75</answer><eos>",  # wrong, no thinking
        "<answer>7</answer><eos>",  # right, direct
    ]
    records = score(TASK, [P1, P1, P2], texts)
    assert [r["accuracy"] for r in records] == [1.0, 0.0, 1.0]
    assert [r["format"] for r in records] == [1.0, 0.0, 0.0]
    assert [r["thinks"] for r in records] == [1.0, 0.0, 0.0]
    assert records[1]["length"] == 5  # <answer> 7 5 </answer> <eos>
    s = summarise(records)
    assert abs(s["accuracy"] - 2 / 3) < 1e-9 and abs(s["think_rate"] - 1 / 3) < 1e-9
    assert s["by_difficulty"]["2"]["accuracy"] == 0.5 and s["by_difficulty"]["1"]["accuracy"] == 1.0


def test_samples_map_back_to_their_problem():
    records = score(TASK, [P1, P2], ["<answer>85</answer>", "<answer>1</answer>", "<answer>7</answer>", "x"], samples=2)
    assert [r["problem"] for r in records] == [P1, P1, P2, P2]
    assert [r["accuracy"] for r in records] == [1.0, 0.0, 1.0, 0.0]


def test_mistakes_read_like_a_person_would_say_them():
    assert TASK.mistake(P1, "<answer>75</answer><eos>") == "model says 47+38=75, truth 85"
    assert TASK.mistake(P1, "so 85<eos>").startswith("model says 47+38=no answer block in")


def test_levels_follow_the_task_order():
    s = summarise(score(TASK, [P2, P1], ["<answer>7</answer>", "<answer>85</answer>"]), TASK.levels)
    assert list(s["by_difficulty"]) == ["1", "2"] and s["by_difficulty"]["2"]["n"] == 1


def test_think_length():
    assert think_length("<think>abc</think><answer>1</answer>") == 3
    assert think_length("<answer>1</answer>") == 0
    assert think_length("</think><think>") == 0
