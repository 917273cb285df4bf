"""toyds/export/: a toyds model is a transformers model (Llama, DeepseekV3, Glm4Moe), checked against
transformers' own classes: the same logits, the same experts, the same greedy tokens, and back bit for bit."""

import json

import pytest
import torch

pytest.importorskip("transformers")
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from toyds.cli.main import main  # noqa: E402
from toyds.core.model import GPT, make_config  # noqa: E402
from toyds.core.sampling import generate, left_pad  # noqa: E402
from toyds.core.tokenizer import Tokenizer  # noqa: E402
from toyds.efficient.quantize import quantize_model  # noqa: E402
from toyds.export.hf import export_model, hf_model, import_model  # noqa: E402
from toyds.export.mapping import Unexportable, target  # noqa: E402
from toyds.export.tokenizer import hf_tokenizer  # noqa: E402
from toyds.tasks.arithmetic import Arithmetic  # noqa: E402
from toyds.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

V3 = dict(score_func="sigmoid", n_groups=4, topk_groups=2, route_scale=2.5, balance="bias+seq_aux")
MODELS = {  # name -> (make_config kwargs, the transformers class it must become)
    "dense MHA": (dict(), "LlamaForCausalLM"),
    "MLA + V3 MoE, 1 shared": (dict(attn="mla", ffn="moe", moe=V3), "DeepseekV3ForCausalLM"),
    "MLA + V3 MoE, 2 shared, q_lora 32, naive": (dict(attn="mla", ffn="moe", moe={**V3, "n_shared_experts": 2},
                                                      attn_config=dict(q_lora_rank=32, attn_impl="naive")),
                                                 "DeepseekV3ForCausalLM"),
    "MLA, dense": (dict(attn="mla"), "DeepseekV3ForCausalLM"),
    "MHA + sigmoid MoE": (dict(ffn="moe", moe=dict(score_func="sigmoid", balance="bias")), "Glm4MoeForCausalLM"),
    "MHA + sigmoid MoE, no shared expert": (dict(ffn="moe", moe=dict(score_func="sigmoid", balance="none",
                                                                     n_shared_experts=0)), "Glm4MoeForCausalLM"),
}
PROMPTS = ["<bos>347+589=", "<bos>7+8=", "<bos>45+902="]


def lively(kw, seed=0):
    """A tiny model with weights far from their init (and a non-zero balancing bias), so that greedy
    decoding and routing have real choices to make."""
    torch.manual_seed(seed)
    model = GPT(make_config("tiny", **kw)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        for layer in model.moe_layers():
            if layer.gate.biased:  # a bias only where a rule would have set one
                layer.gate.bias.copy_(torch.randn_like(layer.gate.bias) * 0.1)
    return model


@pytest.fixture(params=list(MODELS), ids=list(MODELS))
def exported(request, tmp_path):
    kw, cls = MODELS[request.param]
    model = lively(kw)
    folder = export_model(save_checkpoint(tmp_path / "m.pt", model), tmp_path / "hf")
    return model, folder, cls, tmp_path


def test_logits_experts_and_greedy_tokens_match_transformers(exported):
    model, folder, cls, _ = exported
    hf = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    assert type(hf).__name__ == cls
    tok = Tokenizer()
    ids, mask = left_pad([tok.encode(p) for p in PROMPTS], tok.pad_id, "cpu")  # padded
    chosen = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: chosen.append(out[2]))
             for name, m in hf.named_modules() if name.endswith("mlp.gate")]
    with torch.no_grad():
        ours, theirs = model(ids, pad_mask=mask), hf(input_ids=ids, attention_mask=mask.long()).logits
    for h in hooks:
        h.remove()
    assert (ours - theirs).abs()[mask].max() < 1e-4
    for layer, indices in zip(model.moe_layers(), chosen):  # the same experts for every real token
        real = indices.view(*mask.shape, -1)[mask]  # transformers routes the padding too; toyds does not
        assert torch.equal(real.sort(-1).values, layer.indices.sort(-1).values)
    single = torch.tensor([tok.encode(PROMPTS[0])])  # unpadded
    with torch.no_grad():
        assert (model(single) - hf(input_ids=single).logits).abs().max() < 1e-4
    hf_tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    enc = hf_tok(PROMPTS, return_tensors="pt", padding=True)
    out = hf.generate(**enc, max_new_tokens=20)
    ref = generate(model, [tok.encode(p) for p in PROMPTS], 20, temperature=0.0)
    assert out[:, enc["input_ids"].shape[1]:].tolist() == ref.completions[:, : out.shape[1] - enc["input_ids"].shape[1]].tolist()


def test_export_then_import_is_bit_for_bit(exported):
    model, folder, _, tmp_path = exported
    assert main(["import", str(folder), "--out", str(tmp_path / "back.pt")]) == 0
    back, _, meta = load_checkpoint(tmp_path / "back.pt")
    assert back.cfg == model.cfg and meta["imported_from"] == str(folder)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    assert list(model.state_dict()) == list(back.state_dict())


@pytest.mark.parametrize("kw, says", [
    (dict(ffn="moe", moe=dict(score_func="softmax")), "MoEConfig.score_func='softmax'"),
    (dict(ffn="moe", moe=dict(score_func="sigmoid", n_groups=4, topk_groups=2, balance="none")),
     "n_groups=4 with balance='none'"),
    (dict(mtp_depth=1), "GPTConfig.mtp_depth=1: multi-token prediction heads have no transformers target"),
])
def test_a_model_with_no_exact_target_is_refused_before_anything_is_written(tmp_path, capsys, kw, says):
    path = save_checkpoint(tmp_path / "m.pt", GPT(make_config("tiny", **kw)))
    assert main(["export", str(path), "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and not (tmp_path / "hf").exists()
    with pytest.raises(Unexportable):
        target(GPT(make_config("tiny", **kw)).cfg)


def test_int8_and_a_folder_of_someone_elses_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "q.pt", quantize_model(GPT(make_config("tiny"))))
    with pytest.raises(Unexportable, match="holds int8 weights"):
        export_model(path, tmp_path / "hf")
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("mine")
    with pytest.raises(ValueError, match="refusing to write into .*notes: it holds files that are not a toyds export"):
        export_model(save_checkpoint(tmp_path / "m.pt", GPT(make_config("tiny"))), mine)
    assert (mine / "todo.txt").read_text() == "mine"


def test_the_tokenizer_is_toyds_tokenizer(tmp_path):
    task = Arithmetic(digits=(1, 2, 3), ops=("+", "-", "x"))
    texts = [p + c for p, c in task.corpus(task.sample(300), "base")] + ["a b  c", "<think></think>"]
    ours, theirs = Tokenizer(), hf_tokenizer()
    theirs.save_pretrained(tmp_path)
    theirs = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    for text in texts:
        ids = theirs(text)["input_ids"]
        assert ids == ours.encode(text) and theirs.decode(ids) == text
    assert theirs.decode(ours.encode("<bos>1+2=<answer>3</answer><eos>"), skip_special_tokens=True) == \
        "1+2=<answer>3</answer>"  # the format tags are not special: they stay
    with pytest.raises(Exception, match="Missing \\[UNK\\] token"):  # toyds refuses an unknown character too
        theirs("347*589")
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert (config["bos_token"], config["eos_token"], config["pad_token"]) == ("<bos>", "<eos>", "<pad>")


def test_generation_config_names_the_special_tokens(tmp_path):
    folder = export_model(save_checkpoint(tmp_path / "m.pt", GPT(make_config("tiny"))), tmp_path / "hf")
    g = json.loads((folder / "generation_config.json").read_text())
    assert (g["bos_token_id"], g["eos_token_id"], g["pad_token_id"]) == (1, 2, 0) and g["suppress_tokens"] == [0, 1]
    hf = hf_model(GPT(make_config("tiny")))
    assert hf.config.tie_word_embeddings and hf.config.toyds_config["attn"] == "mha"


@pytest.mark.slow
def test_trl_grpo_trains_an_exported_model_with_toyds_rewards(tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from toyds.rl.reward_registry import R1, resolve
    from toyds.train.supervised import TrainConfig, train_supervised

    task = Arithmetic(digits=(1,))
    torch.manual_seed(0)
    student = GPT(make_config("tiny"))  # half-trained on 1-digit sums: some of its answers are right, some wrong
    train_supervised(student, task.corpus(task.sample(500), "base"), TrainConfig.recipe(60, 1e-2), progress=False)
    folder = export_model(save_checkpoint(tmp_path / "m.pt", student), tmp_path / "hf")
    fns, weights = resolve(R1, task)
    data = Dataset.from_list([{"prompt": p.prompt(), "answer": p.answer} for p in task.sample(16, "rl")])
    args = GRPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=12, max_steps=2, learning_rate=1e-3, logging_steps=1, report_to="none",
                      use_cpu=True, save_strategy="no", reward_weights=weights, beta=0.0)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = GRPOTrainer(model=model, reward_funcs=fns, args=args, train_dataset=data,
                          processing_class=AutoTokenizer.from_pretrained(folder, local_files_only=True))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == 2 and all("rewards/accuracy_reward_batch/mean" in h for h in logs)
    trainer.save_model(str(tmp_path / "trained"))
    back = import_model(tmp_path / "trained")  # TRL's folder keeps toyds_config: it comes back as a toyds model
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert back.cfg == load_checkpoint(tmp_path / "m.pt")[0].cfg


def test_a_bias_no_rule_reads_exports_as_zeros():
    """Without the bias rule toyds's gate never reads its bias buffer; transformers always adds
    e_score_correction_bias, so the export writes zeros there, whatever the buffer holds."""
    model = lively(dict(ffn="moe", moe=dict(score_func="sigmoid", balance="aux_loss")))
    for layer in model.moe_layers():
        layer.gate.bias.copy_(torch.randn_like(layer.gate.bias))  # ignored by toyds's routing
    hf = hf_model(model)
    assert all(torch.equal(layer.mlp.gate.e_score_correction_bias, torch.zeros(8)) for layer in hf.model.layers)
    ids = torch.tensor([Tokenizer().encode(PROMPTS[0])])
    with torch.no_grad():
        assert (model(ids) - hf(input_ids=ids).logits).abs().max() < 1e-4
