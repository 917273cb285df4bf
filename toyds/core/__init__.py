"""The model every toyds experiment trains, and how it writes.

    tokenizer.py   53 characters; <think>, <answer> and the other tags are single tokens
    layers.py      RMSNorm and SwiGLU (the dense feed-forward, and each expert)
    rope.py        rotary positions, and the positions and mask of packed rows
    attention.py   multi-head attention with a KV cache, and ATTENTIONS: the registry ("mha", "mla")
    model.py       GPTConfig and the GPT: attention, feed-forward (dense or MoE) and MTP heads chosen in the config
    sampling.py    batched sampling with a KV cache, and the log-probabilities GRPO needs
"""
