"""toyds/parallel/distributed.py against the single-process reference, on 2 real gloo ranks.

Each spawned test starts two processes (torch.multiprocessing, meeting through a
file store in a fresh temporary folder), runs the same seeded layer or model on both, and checks inside the workers
that the distributed result equals the one-process result: outputs, input grads,
every gradient that lives on a rank, the routing statistics and the bias rule.
A failed assertion in a worker fails the test with the worker's traceback.
"""

import errno
import os
import socket
import tempfile
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from toyds.core.model import GPT, make_config
from toyds.moe import balance
from toyds.moe.config import MoEConfig
from toyds.moe.layer import MoE
from toyds.parallel.data_parallel import DataParallel
from toyds.parallel.distributed import (
    all_reduce_grads,
    all_reduce_mean,
    get_world_size,
    init,
    is_main,
    rank_seed,
    teardown,
)
from toyds.parallel.expert_parallel import ExpertParallelMoE, expert_parallel, local_experts
from toyds.tasks.arithmetic import sample_problems
from toyds.tasks.arithmetic_traces import build_corpus
from toyds.train.supervised import TrainConfig, train_supervised

TOL = 1e-5


def _entry(rank, world, store, fn, args):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))  # a hang fails the test instead of stalling it
    fn(rank, world, *args)
    teardown()  # only on success: a failed rank must not wait at the barrier for the other


def spawn(fn, *args, world=2):
    # The ranks meet through a file, not a port: a port picked here (bind port 0, close it) and
    # bound by rank 0 seconds later could be taken in between, and the test failed with
    # EADDRINUSE. A fresh folder per spawn, so no run ever sees another's store.
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_entry, args=(world, os.path.join(folder, "store"), fn, args), nprocs=world, join=True)


def max_diff(a, b) -> float:
    a = torch.zeros_like(b) if a is None else a  # an expert that ran no rows may have no grad
    b = torch.zeros_like(a) if b is None else b
    return (a - b).abs().max().item() if a.numel() else 0.0


# ------------------------------------------------------------ worker bodies


def _seeded_moe(cfg: MoEConfig) -> MoE:
    torch.manual_seed(0)  # the same layer on every rank
    moe = MoE(cfg)
    with torch.no_grad():
        moe.gate.weight.normal_()  # a decisive router: uneven loads, some experts idle
        moe.gate.bias.copy_(torch.randn(cfg.n_experts) * 0.1)
    return moe


def check_against_single(rank, world, moe, N, expect_received=None):
    """EP on this rank's rows of a batch vs the single layer on the whole batch, fwd and bwd."""
    cfg = moe.cfg
    ep = ExpertParallelMoE(moe)
    X, G = torch.randn(N, cfg.dim), torch.randn(N, cfg.dim)  # inputs and upstream gradient, same on all ranks
    rows = torch.arange(N).tensor_split(world)[rank]
    # single process, whole batch; the global loss is sum(Y * G) (+ the aux loss)
    X_ref = X.clone().requires_grad_()
    Y = moe(X_ref)
    ((Y * G).sum() + (moe.balance_loss if moe.balance_loss is not None else 0)).backward()
    # expert-parallel: this rank's loss is its share, and the shares sum to the global loss
    x = X[rows].clone().requires_grad_()
    y = ep(x)
    ((y * G[rows]).sum() + (ep.balance_loss if ep.balance_loss is not None else 0)).backward()

    assert max_diff(y, Y[rows].detach()) <= TOL
    assert max_diff(x.grad, X_ref.grad[rows]) <= TOL
    # a local expert's grad already holds every rank's tokens: the exchange carried them back
    for local, i in zip(ep.experts, ep.expert_ids):
        for p, q in zip(local.parameters(), moe.experts[i].parameters()):
            assert max_diff(p.grad, q.grad) <= TOL, f"expert {i} on rank {rank}"
    # gate and shared experts saw only this rank's tokens: sum over ranks (DDP would, with a mean loss)
    all_reduce_grads(ep.replicated_parameters())
    ref_replicated = list(moe.gate.parameters()) + list(moe.shared_experts.parameters())
    for p, q in zip(ep.replicated_parameters(), ref_replicated):
        assert max_diff(p.grad, q.grad) <= TOL
    # statistics: the global load, so the bias rule moves every rank's gate like the single one
    assert torch.equal(ep.load, moe.load) and ep.load.sum() == N * cfg.top_k
    if moe.balance_loss is not None:  # each rank's share; the shares sum to the whole batch's loss
        total = ep.balance_loss.detach().clone()
        dist.all_reduce(total)
        assert abs(total.item() - moe.balance_loss.item()) <= TOL
    balance.after_step(One(moe))
    balance.after_step(One(ep))  # no all-reduce needed: the expert-parallel layer counted globally
    assert torch.equal(ep.gate.bias, moe.gate.bias)
    assert sum(ep.stats.sent) == len(rows) * cfg.top_k
    if expect_received is not None:
        assert ep.stats.received == expect_received[rank]


class One:
    def __init__(self, moe):
        self.moe = moe

    def moe_layers(self):
        return [self.moe]


def ep_cases(rank, world):
    N = 37  # odd: the ranks get 19 and 18 tokens
    cases = [
        dict(score_func="softmax", balance="bias", dispatch="sorted"),
        dict(score_func="sigmoid", balance="bias", n_groups=4, topk_groups=2, route_scale=1.5),
        dict(score_func="softmax", balance="aux_loss", balance_params={"aux_loss": {"alpha": 0.1}}, dispatch="grouped_mm"),
    ]
    for kw in cases:
        cfg = MoEConfig(dim=16, n_experts=8, top_k=2, n_shared_experts=1, expert_dim=12, **kw)
        check_against_single(rank, world, _seeded_moe(cfg), N)

    # V3's recipe with sequences: (B, T, D) inputs, each rank holds whole sequences (rows of B)
    cfg = MoEConfig(dim=16, n_experts=8, top_k=2, expert_dim=12, score_func="sigmoid", balance="bias+seq_aux",
                    balance_params={"seq_aux": {"alpha": 0.05}})
    moe = _seeded_moe(cfg)
    ep = ExpertParallelMoE(moe)
    X = torch.randn(5, 7, 16)  # 5 sequences of 7 tokens: 3 on rank 0, 2 on rank 1
    mine = torch.arange(5).tensor_split(world)[rank]
    Y = moe(X)
    y = ep(X[mine])
    assert max_diff(y, Y[mine].detach()) <= TOL
    share = ep.balance_loss.detach().clone()
    dist.all_reduce(share)
    assert abs(share.item() - moe.balance_loss.item()) <= TOL

    # capacity applies per rank (GShard's local groups): EP equals MoE run on this rank's rows alone
    cfg = MoEConfig(dim=16, n_experts=8, top_k=2, expert_dim=12, capacity_factor=0.5, dispatch="sorted")
    moe = _seeded_moe(cfg)
    ep = ExpertParallelMoE(moe)
    X = torch.randn(N, 16)
    x = X[torch.arange(N).tensor_split(world)[rank]]
    assert max_diff(ep(x), moe(x)) <= TOL
    dropped = torch.tensor(moe.dropped)
    dist.all_reduce(dropped)
    assert ep.dropped == dropped.item() > 0

    # a whole GPT made expert-parallel computes the same logits
    torch.manual_seed(0)
    gpt = GPT(make_config("tiny", ffn="moe", moe=dict(n_experts=4)))
    idx = torch.randint(0, 53, (4, 9))
    ref = gpt(idx)
    ep_gpt = expert_parallel(gpt)
    assert all(isinstance(m, ExpertParallelMoE) for m in ep_gpt.moe_layers())
    assert max_diff(ep_gpt(idx.tensor_split(world)[rank]), ref.tensor_split(world)[rank].detach()) <= TOL


def ep_no_tokens_for_rank_1(rank, world):
    # the bias makes experts 0 and 1 (rank 0's) irresistible: rank 1 receives nothing
    cfg = MoEConfig(dim=16, n_experts=4, top_k=2, n_shared_experts=1, expert_dim=12, balance="bias",
                    dispatch="sorted")
    torch.manual_seed(0)
    moe = MoE(cfg)
    with torch.no_grad():
        moe.gate.bias.copy_(torch.tensor([10.0, 10.0, 0.0, 0.0]))
    N = 10  # 5 tokens each, 10 copies each, all for rank 0
    check_against_single(rank, world, moe, N, expect_received=[[10, 10], [0, 0]])
    assert moe.load.tolist() == [10.0, 10.0, 0.0, 0.0]

    # the impossible split: 3 experts over 2 ranks
    with pytest.raises(ValueError, match=r"n_experts=3 routed experts over world size 2.*multiple of 2"):
        ExpertParallelMoE(MoE(MoEConfig(dim=8, n_experts=3, top_k=2, expert_dim=4)))


def ddp_training(rank, world):
    assert all_reduce_mean({"loss": float(rank), "acc": 1.0}) == {"loss": 0.5, "acc": 1.0}
    assert rank_seed(7) == 7 + 10_000 * rank and is_main() == (rank == 0)
    pairs = build_corpus(sample_problems(200, digits=(1, 2)), "think")
    cfg = TrainConfig(steps=4, batch_size=9, warmup=1)  # 9 rows: shards of 5 and 4
    mcfg = make_config("tiny", ffn="moe", moe=dict(balance="bias", balance_params={"bias": {"gamma": 0.01}}))
    torch.manual_seed(0)
    single = GPT(mcfg)
    hist_single = train_supervised(single, pairs, cfg)  # one process, the whole batch, on every rank
    torch.manual_seed(0 if rank == 0 else 123)  # rank 1 starts elsewhere: DDP must copy rank 0's weights
    model = GPT(mcfg)
    hist_ddp = train_supervised(model, pairs, cfg, parallel=DataParallel())
    for (name, p), q in zip(model.named_parameters(), single.parameters()):
        assert max_diff(p, q) <= TOL, name
    for m, m_ref in zip(model.moe_layers(), single.moe_layers()):
        assert torch.equal(m.gate.bias, m_ref.gate.bias) and m.gate.bias.abs().sum() > 0
    assert abs(hist_ddp[-1]["loss"] - hist_single[-1]["loss"]) <= TOL


# -------------------------------------------------------------------- tests


def _sum_of_ranks(rank, world):
    t = torch.tensor([float(rank)])
    dist.all_reduce(t)
    assert t.item() == sum(range(world))


def test_spawn_picks_no_port(monkeypatch):
    # the race's cause: the parent chose a port for rank 0 to bind later. Now a parent that
    # cannot bind any socket still starts the ranks (they run in fresh interpreters, unpatched).
    def bind(self, address):
        raise OSError(errno.EADDRINUSE, f"{address} taken (by this test)")

    monkeypatch.setattr(socket.socket, "bind", bind)
    spawn(_sum_of_ranks)


def test_expert_parallel_matches_single_process_forward_and_backward():
    spawn(ep_cases)


def test_a_rank_that_receives_no_tokens_and_the_impossible_split():
    spawn(ep_no_tokens_for_rank_1)


def test_ddp_training_matches_single_process():
    spawn(ddp_training)


def test_one_process_needs_no_launcher(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init() == (0, 1) and get_world_size() == 1 and is_main()
    assert all_reduce_mean({"loss": 2.0}) == {"loss": 2.0}
    assert list(local_experts(8, 2, 1)) == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="n_experts=6 routed experts over world size 4"):
        local_experts(6, 4, 0)
    with pytest.raises(RuntimeError, match="torchrun"):
        DataParallel()
    # world size 1: the exchange keeps every row, and the layer is the MoE itself
    torch.manual_seed(0)
    moe = _seeded_moe(MoEConfig(dim=16, n_experts=4, expert_dim=8, balance="aux_loss"))
    x = torch.randn(12, 16)
    assert max_diff(ExpertParallelMoE(moe)(x), moe(x)) <= TOL
    teardown()


def _grpo_worker(rank, world):
    from toyds.rl.grpo import GRPOConfig, train_grpo

    torch.manual_seed(rank)  # different starting weights: DDP must copy rank 0's
    model = GPT(make_config("tiny", ffn="moe", moe=dict(n_experts=4, balance="bias", balance_params={"bias": {"gamma": 0.01}})))
    problems = sample_problems(64, digits=(1, 2), seed=0)
    cfg = GRPOConfig(steps=3, prompts_per_step=4, group_size=4, max_new_tokens=4, lr=1e-2)
    hist = train_grpo(model, problems, cfg, reward_fns=[lambda completions, **kw: [float(c[:1] == "7") for c in
                                                                                   completions]],
                      parallel=DataParallel())
    # every rank ends with the same weights and gate biases, and logs the same (reduced) figures
    flat = torch.cat([p.detach().flatten() for p in model.parameters()] + [m.gate.bias for m in model.moe_layers()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    assert max_diff(gathered[0], gathered[1]) <= TOL
    rows = [None] * world
    dist.all_gather_object(rows, [r["reward"] for r in hist])
    assert rows[0] == rows[1] and len(rows[0]) == 3


def test_grpo_data_parallel_keeps_ranks_identical():
    spawn(_grpo_worker)


def test_send_counts_by_hand():
    from toyds.parallel.expert_parallel import send_counts

    # 3 tokens, top-2, E = 4 experts on W = 2 ranks (experts 0 1 | 2 3)
    per_expert, send = send_counts(torch.tensor([[0, 3], [1, 3], [3, 2]]), 4, 2)
    assert per_expert.tolist() == [1, 1, 1, 3] and send == [2, 4]
    with pytest.raises(ValueError, match="multiple of 3"):
        send_counts(torch.tensor([0]), 4, 3)
