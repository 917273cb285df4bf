"""Measuring a model on held-out problems of any task.

    accuracy.py    greedy and sampled accuracy by difficulty level, format and think rates, lengths, pass@k
    test_time.py   compute spent at test time: majority vote and best-of-N over N samples, against N
"""
