"""toyds/train/trainer.py: the one optimiser step and the loop every trainer shares."""

import copy
import math

import pytest
import torch

from toyds.core.model import GPT, make_config
from toyds.moe.routing import LoadCurve
from toyds.tasks.arithmetic import sample_problems
from toyds.tasks.arithmetic_traces import build_corpus
from toyds.train.checkpoint import load_checkpoint
from toyds.train.supervised import TrainConfig, train_supervised
from toyds.train.trainer import NonFiniteError, fit, make_optimizer, optimizer_step

PAIRS = build_corpus(sample_problems(200, digits=(1, 2)), "direct")


def tiny(ffn="dense", **moe):
    torch.manual_seed(0)
    return GPT(make_config("tiny", ffn=ffn, moe=moe or None))


def test_every_step_logs_a_row_and_eval_figures_are_prefixed(tmp_path):
    cfg = TrainConfig(steps=6, batch_size=8, warmup=1, eval_every=3, save_every=2)
    calls = []
    hist = train_supervised(tiny(), PAIRS, cfg, eval_fn=lambda m: {"accuracy": 0.5},
                            step_callback=lambda step, m: calls.append(step), checkpoint=tmp_path / "m.pt")
    assert [r["step"] for r in hist] == [1, 2, 3, 4, 5, 6] and calls == [0, 1, 2, 3, 4, 5]
    for r in hist:
        assert {"loss", "lr", "grad_norm", "seconds"} <= set(r) and math.isfinite(r["loss"])
    assert [r["step"] for r in hist if "eval_accuracy" in r] == [3, 6]
    assert not any("accuracy" in r for r in hist)  # only the prefixed name
    _, _, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["step"] == 6 and len(meta["history"]) == 6


def test_the_step_adds_the_balancing_loss_and_clips():
    model = tiny("moe", balance="aux_loss", balance_params={"aux_loss": {"alpha": 0.5}})
    opt = make_optimizer(model, 1e-3)
    x = torch.randint(3, 20, (4, 6))
    loss = model(x).square().mean()
    bal = sum(m.balance_loss for m in model.moe_layers())
    stats = optimizer_step(model, opt, loss, grad_clip=1e-3)
    assert math.isclose(stats["balance_loss"], bal.item(), rel_tol=1e-6)
    norm = torch.norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
    assert stats["grad_norm"] > 1e-3 and math.isclose(float(norm), 1e-3, rel_tol=1e-3)  # clipped to grad_clip


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_loss_stops_before_the_update(bad):
    model = tiny()
    before = [p.clone() for p in model.parameters()]
    opt = make_optimizer(model, 1e-3)
    loss = model(torch.randint(3, 20, (2, 5))).mean() * bad
    with pytest.raises(NonFiniteError, match="step 7: the loss is"):
        optimizer_step(model, opt, loss, step=7)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_an_infinite_learning_rate_is_caught_at_the_first_bad_figure(tmp_path):
    model = tiny()
    opt = make_optimizer(model, 1e-3)
    x = torch.randint(3, 20, (4, 6))

    def step_fn(step, update):
        loss = model(x).logsumexp(-1).mean()
        update(loss)
        return {"loss": loss.item()}

    # an infinite learning rate: the first step makes the weights non-finite and stops there
    with pytest.raises(NonFiniteError, match=r"step 1: the optimiser step made the weights non-finite \(learning rate \[inf\]"):
        fit(model, step_fn, 5, opt=opt, lr_at=lambda s: float("inf"), checkpoint=tmp_path / "m.pt", save_every=1)
    assert not (tmp_path / "m.pt").exists()  # never a NaN checkpoint


def test_a_step_fn_must_take_a_step():
    model = tiny()
    with pytest.raises(RuntimeError, match="without calling update"):
        fit(model, lambda step, update: {"loss": 0.0}, 1, opt=make_optimizer(model, 1e-3), lr_at=lambda s: 1e-3)


def test_load_curve_records_the_training_tokens_of_each_step():
    model = tiny("moe", balance="bias")
    curve = LoadCurve(layer=0, every=1)
    train_supervised(model, PAIRS, TrainConfig(steps=3, batch_size=8, warmup=1), step_callback=curve)
    assert [s for s, _ in curve.points] == [0, 1, 2]
    assert all(math.isclose(sum(shares), 1.0, rel_tol=1e-6) for _, shares in curve.points)


def test_muon_takes_the_blocks_hidden_matrices_and_adamw_the_rest():
    model = tiny("moe")
    opt = make_optimizer(model, 1e-3, 0.1, kind="muon")
    muon, adamw = opt.parts
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    by_id = {id(p): n for n, p in model.named_parameters()}
    in_muon = {by_id[id(p)] for g in muon.param_groups for p in g["params"]}
    in_adamw = {by_id[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert in_muon and not in_muon & in_adamw and in_muon | in_adamw == set(by_id.values())
    for n in in_muon:
        assert n.startswith("blocks.") and ".gate." not in n and model.get_parameter(n).dim() == 2
    assert any("emb" in n for n in in_adamw) and any(".gate." in n for n in in_adamw)
    assert len(opt.param_groups) == len(muon.param_groups) + len(adamw.param_groups)  # fit() sets every lr


def test_muon_attention_takes_exactly_the_attention_matrices():
    model = tiny("moe")
    muon, adamw = make_optimizer(model, 1e-3, kind="muon_attention").parts
    by_id = {id(p): n for n, p in model.named_parameters()}
    in_muon = {by_id[id(p)] for g in muon.param_groups for p in g["params"]}
    expected = {n for n, p in model.named_parameters() if ".attn." in n and p.dim() == 2}
    assert in_muon == expected and expected  # e.g. blocks.0.attn.wqkv.weight, blocks.0.attn.wo.weight
    in_adamw = {by_id[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert any(".experts." in n for n in in_adamw) and not in_muon & in_adamw


def test_a_muon_run_lowers_the_loss_and_repeats_exactly():
    cfg = TrainConfig(steps=20, batch_size=16, warmup=2, optimizer="muon", lr=1e-2)
    runs = []
    for _ in range(2):
        runs.append(train_supervised(tiny(), PAIRS, cfg, progress=False))
    assert runs[0][-1]["loss"] == runs[1][-1]["loss"]
    assert runs[0][-1]["loss"] < 0.7 * runs[0][0]["loss"]


def test_the_combined_optimiser_state_round_trips():
    a, b = tiny(), tiny()
    opt_a, opt_b = make_optimizer(a, 1e-2, kind="muon"), make_optimizer(b, 1e-2, kind="muon")
    x = torch.randint(3, 20, (4, 6))
    for _ in range(2):
        optimizer_step(a, opt_a, a(x).square().mean())
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as from a file: no shared buffers
    optimizer_step(a, opt_a, a(x).square().mean())
    optimizer_step(b, opt_b, b(x).square().mean())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
