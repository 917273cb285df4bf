"""The workshop's exercises and the checker behind `toyds check`.

    exercises.py     the exercises: which toyds function each one cuts out, and its cases
    cases_base.py    the Case type and the helpers the cases are written with
    cases_rl.py      the cases of advantages, grpo_loss, accuracy_reward and kd_loss
    cases_moe.py     the cases of gate, bias_update, all_to_all_counts and mla_absorb
    checker.py       runs an exercise's cases against a participant's file and explains the first failure
    participant.py   loading a participant's file (and the --advantages FILE hook of the demos)
    compare.py       showing values as a person reads them, and where two values part
"""
