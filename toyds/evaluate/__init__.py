"""Measuring a model on held-out problems of any task.

    accuracy.py   greedy and sampled accuracy by difficulty level, format and think rates, lengths, pass@k
"""
