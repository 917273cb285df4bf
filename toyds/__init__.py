"""toyds: the ideas behind DeepSeek-R1 and DeepSeek-V3, at toy scale, on a CPU.

One idea per folder; each folder's __init__.py maps its modules:

    core/        the model: tokenizer, RMSNorm and SwiGLU, rotary positions, attention, the GPT, sampling
    moe/         DeepSeek-V3's mixture of experts: config, gate, layer, balancing rules, dispatch, routing stats
    efficient/   cheaper to run: Multi-head Latent Attention, multi-token prediction, speculative decoding, int8
    train/       the one optimiser step and loop, supervised training, batches, losses, checkpoints
    tasks/       what the models learn: arithmetic, Countdown-lite, addition with checks; the Task seam
    rl/          rule-based rewards and their registry, GRPO, a learned reward model
    distill/     distillation: divergences, logit KD, on-policy KD, rejection sampling
    evaluate/    held-out accuracy by difficulty, pass@k
    parallel/    torch.distributed: data parallelism and expert parallelism
    pipeline/    the whole story in one run: MoE base -> R1-Zero -> rejection sampling -> student
    export/      a toyds model as a transformers model (Llama, DeepseekV3, Glm4Moe), and back
    experiment/  what every script shares: flags, seeds and claims, metrics.json, pictures
    workshop/    the exercises and their checker (`toyds check`)
    cli/         the `toyds` command

Nothing is imported here: a reader finds each idea where the folder says, and
`from toyds.moe.gate import route` says where route lives.
"""

__version__ = "0.1.0"
