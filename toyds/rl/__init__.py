"""Reinforcement learning from rule-based rewards, as DeepSeek-R1-Zero did it.

    rewards.py           R1's rules: the one answer block, an exact integer, the <think>/<answer> format
    reward_registry.py   rewards by name and weight: --reward accuracy:1,format:0.5 (R1's pair, defined once)
    grpo_loss.py         GRPO's maths: group advantages, the clipped loss and its TRL loss types, the k3 KL
    grpo.py              GRPOConfig and train_grpo: sample, score, advantages, clipped steps
    reward_model.py      a learned reward model: the alternative R1 chose not to use, and why
"""
