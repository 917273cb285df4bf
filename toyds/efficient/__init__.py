"""Cheaper to run: DeepSeek's ways to make each generated token cost less.

    mla.py           Multi-head Latent Attention (V2 section 2.1): a cache of one small latent per token
    mtp.py           multi-token prediction modules and their loss (V3 section 2.2)
    speculative.py   self-speculative greedy decoding: the MTP modules draft, the main model checks
    quantize.py      a weight-only int8 student, per output channel
"""
