"""toyds's tokenizer as a `tokenizers` tokenizer.json, for AutoTokenizer.from_pretrained.

toyds reads text one character at a time, with its seven tags as single tokens
(core/tokenizer.py). The same thing in the `tokenizers` library:

    model          WordLevel over the 53 symbols, id i = VOCAB[i]
    added tokens   <pad> <bos> <eos> (special: dropped by decode(skip_special_tokens=True)) and
                   <think> </think> <answer> </answer> (not special: kept, they are the format)
    pre-tokenizer  every character its own word (Split on the regex "." , isolated)
    decoder        Fuse: the characters are joined back without spaces

so "<bos>347+589=" encodes to exactly toyds's ids and decodes back to the same text. No
token is added on encoding: toyds's prompts carry their own <bos>. An unknown character
is an error in toyds; the exported tokenizer raises too ("WordLevel error: Missing [UNK]
token from the vocabulary"): it has no unknown token to map it to, on purpose.
"""

from __future__ import annotations

from toyds.core.tokenizer import BOS, EOS, PAD, SPECIALS, VOCAB


def hf_tokenizer():
    """A transformers PreTrainedTokenizerFast that tokenizes exactly as toyds.core.tokenizer.Tokenizer."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel({s: i for i, s in enumerate(VOCAB)}))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    special = (PAD, BOS, EOS)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in SPECIALS if t not in special])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   padding_side="left", model_max_length=10**6)
