"""What the models learn: problems whose answers a rule can check. A task is one file.

    base.py                the Task protocol: splits, corpora, the accuracy rule, rewards, measures
    registry.py            TASKS by name, register_task, and the --task / --digits / --ops flags
    arithmetic.py          sums, differences, products of d-digit numbers ("arithmetic", chapters 0-5)
    arithmetic_traces.py   its worked column-by-column traces and base-model corpora
    countdown.py           Countdown-lite: a search whose traces check themselves ("countdown", chapter 7)
    countdown_easy.py      Countdown-lite plus an easy level, two numbers ("countdown_easy", chapter 7)
    countdown_reading.py   its answer checker and the parser that counts tries, checks and backtracks
    addcheck.py            addition with optional checks: where checking does not pay ("addcheck")
    mixed.py               Countdown-lite and addition in one policy (chapter 7's --mixed)
"""
