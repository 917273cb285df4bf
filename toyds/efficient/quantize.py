"""An int8 student: every weight matrix in one byte per number instead of four.

The R1 story ends with a small dense student (toyds/distill/kd.py); this stores it
in a quarter of the bytes. Each row j of a weight matrix W (one output channel)
gets its own scale, and its weights become whole numbers of that scale,
symmetric around zero (per-output-channel, symmetric, weight-only int8):

    s_j = max_i |W_ji| / 127        q_ji = round(W_ji / s_j)  in [-127, 127]        W_ji ~= s_j q_ji

Rounding to the nearest step makes every weight off by at most half a step,
|W_ji - s_j q_ji| <= s_j / 2. A linear layer takes the scale out of its sum:

    y_j = sum_i x_i W_ji  ~=  s_j sum_i x_i q_ji

The embedding (also the output head, tied) is quantised by rows the same way;
the RMSNorm gains stay float32 (a few hundred numbers, and every activation passes
through them). Saved with save_checkpoint and loaded with load_checkpoint, which
record the scheme and check the int8 tensors' dtypes and shapes like any others.

How this differs from production int8 (LLM.int8(), GPTQ, torch's dynamic
quantisation): weights only, activations stay float32, no outlier handling, and
q is converted back to float32 for a plain matmul on every call, so it saves
memory and file size but not arithmetic: on a CPU it is no faster, and at toyds's
widths a little slower (one more conversion per layer per call). I wrote it out
instead of calling torch.ao.quantization.quantize_dynamic because in torch 2.13
that API warns it is deprecated (moving to torchao), its qint8 tensors are
deprecated too, and its packed weights hide the idea; this is the idea in plain
tensors. Shown by `toyds quantize --model PATH` (toyds/cli/main.py).

Shapes: O output channels (rows), I inputs, V vocabulary, D model width.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

SCHEME = "int8"  # the name checkpoints record (checkpoint.py: "quantization")
QMAX = 127  # symmetric: -127..127, so +s and -s are equally far (-128 unused)


def quantize_tensor(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 (O, I), s float32 (O,)) with W ~= s[:, None] * q, one scale per row."""
    if not isinstance(w, torch.Tensor) or w.dim() != 2 or not w.is_floating_point():
        what = f"a {w.dim()}-D {w.dtype} tensor" if isinstance(w, torch.Tensor) else f"a {type(w).__name__}"
        raise ValueError(f"quantize_tensor takes a 2-D floating-point weight matrix (O, I), got {what}")
    if not w.is_meta and not torch.isfinite(w).all():  # (meta tensors: shapes only, load_checkpoint's check)
        bad = tuple(torch.nonzero(~torch.isfinite(w))[0].tolist())
        raise ValueError(f"cannot quantise a weight matrix holding {w[bad].item()} at {bad}: "
                         f"every weight must be finite")
    w = w.detach().float()
    # s_j = max_i |W_ji| / 127
    s = w.abs().amax(dim=1) / QMAX  # (O,)
    # q_ji = round(W_ji / s_j); a row of zeros has s_j = 0 and stays exactly zero
    q = torch.round(w / torch.where(s > 0, s, 1.0)[:, None]).clamp(-QMAX, QMAX).to(torch.int8)  # (O, I)
    return q, s


def dequantize(q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """W ~= s_j q_ji, as float32 (O, I)."""
    if q.dtype != torch.int8 or q.dim() != 2 or s.shape != (q.shape[0],):
        raise ValueError(f"dequantize takes q int8 (O, I) and s (O,), got q {q.dtype} {tuple(q.shape)} "
                         f"and s {tuple(s.shape)}")
    return s[:, None].float() * q.float()  # (O, I)


class Int8Linear(nn.Module):
    """nn.Linear with an int8 weight and a float32 scale per output channel. (..., I) -> (..., O)"""

    def __init__(self, q: torch.Tensor, s: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.in_features, self.out_features = q.shape[1], q.shape[0]
        self.register_buffer("qweight", q)  # (O, I) int8
        self.register_buffer("scale", s)  # (O,) float32
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        return cls(*quantize_tensor(linear.weight), linear.bias)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantised weight (O, I), for code that reads a layer's matrix (MLA's absorbed path)."""
        return dequantize(self.qweight, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # y_j = s_j sum_i x_i q_ji: the int8 matrix as float, the scale applied to the outputs
        y = F.linear(x, self.qweight.to(x.dtype)) * self.scale.to(x.dtype)  # (..., O)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


class Int8Embedding(nn.Module):
    """nn.Embedding with int8 rows: row v is s_v q_v. Its `weight` serves the tied output head."""

    def __init__(self, q: torch.Tensor, s: torch.Tensor):
        super().__init__()
        self.num_embeddings, self.embedding_dim = q.shape
        self.register_buffer("qweight", q)  # (V, D) int8
        self.register_buffer("scale", s)  # (V,) float32

    @classmethod
    def from_embedding(cls, emb: nn.Embedding) -> Int8Embedding:
        return cls(*quantize_tensor(emb.weight))

    @property
    def weight(self) -> torch.Tensor:
        return dequantize(self.qweight, self.scale)  # (V, D)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        # Emb(t) = s_t q_t: only the rows asked for are converted
        return self.scale[idx, None] * self.qweight[idx].float()  # (..., D)


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, (Int8Linear, Int8Embedding)) for m in model.modules())


def quantize_model(model: nn.Module) -> nn.Module:
    """A copy of `model` whose nn.Linear and nn.Embedding layers hold int8 weights.

    Works on any toyds GPT (dense, MoE, MLA, MTP); the original is left as it was.
    """
    if is_quantized(model):
        raise ValueError("this model is already quantised to int8; quantise the float32 model instead")
    if not any(isinstance(m, (nn.Linear, nn.Embedding)) for m in model.modules()):
        raise ValueError(f"a {type(model).__name__} has no nn.Linear or nn.Embedding layer to quantise")
    out = copy.deepcopy(model)
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8Linear.from_linear(child))
            elif isinstance(child, nn.Embedding):
                setattr(parent, name, Int8Embedding.from_embedding(child))
    return out.eval()


def weight_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and persistent buffer: what a checkpoint's weights take."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())
