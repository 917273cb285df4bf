"""toyds/train/trainer.py: the one optimiser step and the loop every trainer shares."""

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
