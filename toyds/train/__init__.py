"""Training: one optimiser step and one loop, which every trainer in toyds shares.

    trainer.py      optimizer_step (balancing losses, the one backward, clipping, non-finite checks,
                    the bias rule) and fit (history, evaluation, checkpoints, progress)
    supervised.py   TrainConfig, the schedule, and pretraining / SFT on (prompt, completion) pairs
    pretrain.py     the bases R1-Zero starts from: BaseRecipe (traces converged, greedy still direct) and
                    SearchRecipe (Countdown-lite's searches, then mostly guesses)
    batches.py      pairs as token ids, padded or packed into shared rows
    losses.py       the next-token loss with the prompt masked out
    checkpoint.py   atomic saves that replace only toyds checkpoints; safe, checked loads
    files.py        atomic_write: free space checked first, temp file, fsync, os.replace
"""
