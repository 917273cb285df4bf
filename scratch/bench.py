import time, torch
from toyds.model import GPT, make_config
from toyds.sampling import generate, completion_logprobs
from toyds.train import masked_lm_loss
torch.set_num_threads(1)
for preset, kw in [("tiny", {}), ("small", {}), ("small", dict(n_layer=3))]:
    m = GPT(make_config(preset, block_size=192, **kw)); opt = torch.optim.AdamW(m.parameters())
    x = torch.randint(3, 50, (64, 60))
    t = time.perf_counter()
    for _ in range(5):
        l = masked_lm_loss(m(x), x, torch.ones_like(x, dtype=torch.bool)); opt.zero_grad(); l.backward(); opt.step()
    tr = (time.perf_counter() - t) / 5
    prompts = [[1, 5, 6, 7, 8, 9, 10, 11, 12, 13]] * 128
    t = time.perf_counter(); g = generate(m, prompts, 80, temperature=1.0); gen = time.perf_counter() - t
    t = time.perf_counter()
    lp = completion_logprobs(m, g.sequences, g.pad_mask, g.prompt_len); lp.sum().backward()
    fb = time.perf_counter() - t
    print(preset, kw, f"params {m.params_total():,} train step 64x60 {tr:.3f}s; gen 128x80 {gen:.2f}s; fwd+bwd 128x90 {fb:.2f}s", flush=True)
