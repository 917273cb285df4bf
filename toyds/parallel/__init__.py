"""Scaling out on torch.distributed (gloo on a CPU, NCCL on GPUs; the same code).

    distributed.py       joining the process group torchrun describes, and the collectives toyds uses
    data_parallel.py     DataParallel: every rank holds the model and takes its rows of each batch (DDP)
    expert_parallel.py   ExpertParallelMoE: E/W routed experts per rank, tokens travel by all-to-all
"""
