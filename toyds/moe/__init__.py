"""DeepSeek-V3's mixture of experts (report, section 2.1.2), one part per file.

    config.py     MoEConfig: experts, top-k, shared experts, score function, groups, balancing, dispatch
    gate.py       the Gate and `route`: sigmoid or softmax scores, group-limited, the bias chooses but never weights
    layer.py      the MoE layer: shared experts + the K routed ones, with its routing statistics
    balance.py    every balancing rule (none, aux_loss, seq_aux, bias), each a class whose fields are its settings
    dispatch.py   running each token through its experts: the loop (V3's), sorted blocks, or one grouped kernel
    routing.py    what the router did: load balance, dead experts, specialisation by token class
"""
