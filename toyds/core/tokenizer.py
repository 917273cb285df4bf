"""A character-level tokenizer with a fixed vocabulary and single-token tags.

Real LLMs use byte-pair encodings with 100k+ tokens; DeepSeek-V3's has 128k. For
arithmetic a character per token is clearer: a reader can line each token up with
a digit, and every model in toyds shares the same 53-token vocabulary by
construction, which distillation relies on.

The seven special tokens are single tokens, written in text as tags:

    <pad> <bos> <eos> <think> </think> <answer> </answer>

Worked example (ids are positions in `VOCAB`, printed by `Tokenizer().encode`):

    "<bos>12+9=<answer>21</answer><eos>"
    -> <bos> 1 2 + 9 = <answer> 2 1 </answer> <eos>      (11 tokens)

`encode` and `decode` round-trip exactly. A character outside the vocabulary
raises a ValueError naming the character and its position, never a silent
<unk>: a typo in a prompt should be loud.
"""

from __future__ import annotations

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
THINK, END_THINK, ANSWER, END_ANSWER = "<think>", "</think>", "<answer>", "</answer>"  # the tags R1's format uses
SPECIALS = (PAD, BOS, EOS, THINK, END_THINK, ANSWER, END_ANSWER)
# digits, the operators the tasks use, the punctuation of the worked traces, and
# lower-case letters for the few words in traces and untagged text ("so", ...)
CHARS = tuple("0123456789+-x=;,.:() ") + tuple("abcdefghijklmnopqrstuvwyz")  # 'x' is above
VOCAB = SPECIALS + CHARS


class Tokenizer:
    """Maps text to token ids and back. Stateless: every instance is identical."""

    def __init__(self) -> None:
        self.vocab: tuple[str, ...] = VOCAB
        self.stoi = {s: i for i, s in enumerate(self.vocab)}
        if len(self.stoi) != len(self.vocab):  # guard against a typo in CHARS
            raise AssertionError("duplicate entries in the vocabulary")
        self.pad_id, self.bos_id, self.eos_id = self.stoi[PAD], self.stoi[BOS], self.stoi[EOS]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        ids, i = [], 0
        while i < len(text):
            if text[i] == "<":  # a tag must match one of the specials exactly
                end = text.find(">", i)
                tag = text[i : end + 1] if end != -1 else ""
                if tag not in self.stoi:
                    shown = tag if tag else text[i : i + 12]
                    raise ValueError(
                        f"unknown tag {shown!r} at position {i}; the tags are {' '.join(SPECIALS)}"
                    )
                ids.append(self.stoi[tag])
                i = end + 1
                continue
            ch = text[i]
            if ch not in self.stoi:
                raise ValueError(
                    f"character {ch!r} at position {i} is not in the vocabulary; "
                    f"valid characters are {''.join(CHARS)!r} and the tags {' '.join(SPECIALS)}"
                )
            ids.append(self.stoi[ch])
            i += 1
        return ids

    def decode(self, ids) -> str:
        out = []
        for pos, t in enumerate(ids):
            t = int(t)
            if not 0 <= t < len(self.vocab):
                raise ValueError(f"token id {t} at position {pos} is outside 0..{len(self.vocab) - 1}")
            out.append(self.vocab[t])
        return "".join(out)
