"""Distillation: a small student learns from a bigger teacher (R1 paper, sections 2.4 and 4.1).

    rejection.py   rejection sampling: the teacher writes, the rules keep what is right (sequence-level KD's data)
    losses.py      the divergences: forward KL, reverse KL, JSD, softened by a temperature
    kd.py          logit distillation on fixed text (white box), with the teacher's distributions cached
    on_policy.py   on-policy distillation (GKD): the student writes, the teacher grades every token
"""
