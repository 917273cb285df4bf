"""toyds: the ideas behind DeepSeek-R1 and DeepSeek-V3, at toy scale, on a CPU.

One concept per module:
    tokenizer.py     characters and the <think>/<answer> tags
    arithmetic.py    problems, worked traces and base-model corpora
    layers.py        RMSNorm and SwiGLU
    rope.py          rotary positions
    model.py         the tiny GPT (dense or mixture-of-experts feed-forward; MHA or MLA)
    mla.py           Multi-head Latent Attention and its small KV cache
    mtp.py           multi-token prediction and self-speculative decoding
    moe.py           DeepSeek-V3 routing, shared experts, load balancing, dispatch
    routing.py       what the router did: load balance and expert specialisation
    train.py         supervised training (pretraining and SFT)
    sampling.py      batched sampling with a KV cache
    evaluate.py      held-out accuracy, format, thinking, pass@k
    checkpoint.py    atomic saves, safe loads
    rewards.py       rule-based accuracy and format rewards
    grpo.py          GRPO and R1-Zero
    reward_model.py  a learned reward model, the alternative R1 avoided
    distill.py       white-box and black-box distillation
    pipeline.py      the whole story: MoE base -> R1-Zero -> rejection sampling -> students
    distributed.py   data and expert parallelism on torch.distributed
    plots.py         pictures (matplotlib extra) and their text forms
    runs.py          what every example does the same way: flags, seeds, metrics.json
    cli.py           the `toyds` command
"""

__version__ = "0.1.0"
