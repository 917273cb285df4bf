"""toyds: the ideas behind DeepSeek-R1 and DeepSeek-V3, at toy scale, on a CPU.

One concept per module:
    tokenizer.py   characters and the <think>/<answer> tags
    arithmetic.py  problems, worked traces and base-model corpora
    model.py       the tiny GPT (dense or mixture-of-experts feed-forward)
    moe.py         DeepSeek-V3 routing, shared experts, load balancing, dispatch
    train.py       supervised training (pretraining and SFT)
    sampling.py    batched sampling with a KV cache
    evaluate.py    held-out accuracy, format, thinking, pass@k
    checkpoint.py  atomic saves, safe loads
    rewards.py     rule-based accuracy and format rewards
    grpo.py        GRPO and R1-Zero
    distill.py     white-box and black-box distillation
"""

__version__ = "0.1.0"
