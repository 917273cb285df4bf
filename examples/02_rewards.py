"""Rule-based rewards, case by case: what R1's accuracy and format rewards pay, and why.

    python examples/02_rewards.py --out runs/02

No model, no training: takes under a second on a laptop CPU (plus importing torch).

Prints, for three problems (347+589, 47+38, 347x8), hand-picked completions,
honest and hacked, with what each reward in toyds/rl/rewards.py gives them:

    acc     accuracy_reward: 1 iff exactly one answer block holds exactly the truth
    fmt     format_reward: 1 iff <think>...</think><answer>...</answer>, nothing else
    graded  format_reward(graded=True): 0.25 per well-placed tag (shaping, off by default)
    reward  combined_reward: acc + 0.5 * fmt, what GRPO trains on

and one line of why under each. Then a second table sets two lenient checks
beside the rules: "the right number appears anywhere" and "float() of the first
answer block". Each pays for a hack the rules refuse, which is what a learned
reward model does too, only where you cannot see it: the reason DeepSeek-R1
used rules (R1 paper, section 2.2.2).

With --out DIR it writes DIR/metrics.json:
{"rows": [{"problem", "completion", "answer", "accuracy", "format", "graded", "reward", "why", "hack"}, ...],
 "lenient": [{"completion", "answer", "anywhere", "float", "rules"}, ...]}
where "hack" names the reward a completion tries to collect without earning it
("accuracy" or "format"), or is null for an honest completion.
"""

from __future__ import annotations

import argparse

from toyds.experiment.flags import HelpFormatter, add_common_args, at_least
from toyds.experiment.output import setup, write_metrics
from toyds.rl.rewards import accuracy_reward, combined_reward, format_reward
from toyds.tasks.arithmetic import Problem
from toyds.tasks.arithmetic_traces import direct_completion, think_completion, trace, untagged_completion

ADD, SMALL, MUL = Problem(347, "+", 589, 3), Problem(47, "+", 38, 2), Problem(347, "x", 8, 3)


def thought(p: Problem, answer: str, end: str = "<eos>") -> str:
    """A worked trace followed by whatever answer block text we want to test."""
    return f"<think>{trace(p)}</think><answer>{answer}</answer>{end}"


# (problem, completion, hack: which reward it tries to game or None, why it scores what it scores)
CASES = [
    (ADD, think_completion(ADD), None, "worked trace, then one answer block: full marks"),
    (ADD, direct_completion(ADD), None, "right, but no <think> block: accuracy without format"),
    (ADD, thought(ADD, "935"), None, "well formed but wrong: format alone pays less than being right"),
    (ADD, untagged_completion(ADD), None, "right number, no answer block: there is nothing to check"),
    (ADD, f"<think>{trace(ADD)}</think><eos>", "accuracy", "answer only in the thinking: it never answered"),
    (ADD, "<answer>935</answer><answer>936</answer><eos>", "accuracy", "two blocks, one right: hedging earns nothing"),
    (ADD, "<answer>935 936 937</answer><eos>", "accuracy", "three guesses in one block: not one plain integer"),
    (SMALL, thought(SMALL, " 85 "), None, "spaces around the answer are stripped"),
    (SMALL, thought(SMALL, "85", " or 86<eos>"), "accuracy", "text after </answer> is a second answer"),
    (SMALL, "<think></think><answer>85</answer><eos>", "format", "empty thinking: right, but no format credit"),
    (SMALL, thought(SMALL, "٨٥"), "accuracy", "Arabic-Indic 85: int() reads 85, the rule only 0-9; format never reads the answer"),
    (SMALL, "<think>7+8=15;4+3+1=8;so <answer>85</answer></think><eos>", "accuracy",
     "answer nested inside the thinking: not an answer"),
    (MUL, think_completion(MUL), None, "multiplication, worked column by column: full marks"),
    (MUL, thought(MUL, "+2776"), None, "+2776 is a second spelling: one spelling per number"),
    (MUL, thought(MUL, "2776.0"), None, "a decimal point: not an integer (float() would take it)"),
    (MUL, "<answer>2776</answer><think>7x8=56;so 2776</think><eos>", "accuracy",
     "blocks in the wrong order: the answer must be the last word"),
    (MUL, "<answer>" + "2776" * 25_000 + "</answer><eos>", "accuracy",
     "100,000 digits, 2776 all over: longer than max_digits, refused at once"),
]


def anywhere_check(completion: str, truth: int) -> float:
    """Lenient check 1: the right number appears somewhere in the text."""
    return float(str(truth) in completion)


def float_check(completion: str, truth: int) -> float:
    """Lenient check 2: float() of whatever sits in the first answer block."""
    start = completion.find("<answer>")
    end = completion.find("</answer>", start)
    if start == -1 or end == -1:
        return 0.0
    try:
        return float(float(completion[start + len("<answer>") : end]) == truth)
    except ValueError:
        return 0.0


LENIENT = [
    think_completion(ADD),
    "<answer>936</answer><answer>935</answer><eos>",
    "<think>is it 934, 935, 936 or 937?</think><answer>935</answer><eos>",
    "<answer>" + " ".join(str(n) for n in range(1000)) + "</answer><eos>",
    "<answer>٩٣٦</answer><eos>",
    "<answer>9.36e2</answer><eos>",
    "<answer> +936.0 </answer> or so<eos>",
]


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 20] + f"...({len(text):,} chars)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("--width", type=at_least(30), default=90,
                    help="longest completion to print in full (longer ones are cut)")
    add_common_args(ap, threads=1)
    args = ap.parse_args(argv)
    setup(args)  # no model here, but the same flags as every example
    if len(args.seeds) > 1:
        print(f"(--seeds {len(args.seeds)}: rewards are rules, not samples, so every seed gives these same figures; "
              "shown once)\n")

    rows = []
    for p, text, hack, why in CASES:
        rows.append({"problem": p.text, "completion": text, "answer": p.answer, "hack": hack, "why": why,
                     "accuracy": accuracy_reward(text, p.answer), "format": format_reward(text),
                     "graded": format_reward(text, graded=True), "reward": combined_reward(text, p.answer)})

    print("rule-based rewards (reward = acc + 0.5 * fmt)")
    shown = None
    for r in rows:
        if r["problem"] != shown:
            shown = r["problem"]
            print(f"\n{shown}={r['answer']}\n{'acc':>5}{'fmt':>5}{'graded':>8}{'reward':>8}   completion / why")
        print(f"{r['accuracy']:>5.0f}{r['format']:>5.0f}{r['graded']:>8.2f}{r['reward']:>8.2f}   "
              f"{shorten(r['completion'], args.width)}")
        print(f"{'':29}{'(hack on ' + r['hack'] + ') ' if r['hack'] else ''}{r['why']}")

    truth = ADD.answer
    lenient = [{"completion": t, "answer": truth, "anywhere": anywhere_check(t, truth),
                "float": float_check(t, truth), "rules": accuracy_reward(t, truth)} for t in LENIENT]
    print(f"\nlenient checks vs the rule, truth {truth}:\n{'anywhere':>9}{'float()':>9}{'rules':>7}   completion")
    for r in lenient:
        print(f"{r['anywhere']:>9.0f}{r['float']:>9.0f}{r['rules']:>7.0f}   {shorten(r['completion'], args.width)}")
    paid = sum(max(r["anywhere"], r["float"]) > r["rules"] for r in lenient)
    print(f"\nThe rule pays only the honest completion; the lenient checks also pay {paid} hacks, and")
    print("a policy under GRPO learns to write whatever is paid. A learned reward model is a lenient")
    print("check you cannot read: you find its holes only after the policy has. Hence R1's rules")
    print("(section 2.2.2); examples/03_r1_zero.py trains against a learned reward to show it.")

    write_metrics(args.out, {"rows": rows, "lenient": lenient})
    return rows


if __name__ == "__main__":
    main()
