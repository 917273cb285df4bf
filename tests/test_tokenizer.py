import pytest

from toyds.core.tokenizer import SPECIALS, VOCAB, Tokenizer

tok = Tokenizer()


def test_worked_example_from_docstring():
    ids = tok.encode("<bos>12+9=<answer>21</answer><eos>")
    assert [tok.vocab[i] for i in ids] == ["<bos>", "1", "2", "+", "9", "=", "<answer>", "2", "1", "</answer>", "<eos>"]


def test_specials_are_single_tokens_and_first():
    for i, s in enumerate(SPECIALS):
        assert tok.encode(s) == [i]
    assert tok.pad_id == 0 and tok.vocab_size == len(VOCAB) == 53


@pytest.mark.parametrize(
    "text",
    ["", "347+589=", "<think>7+9=16;so 16</think><answer>16</answer><eos>", "so 936 (carry: 1)", "<pad><pad><bos>"],
)
def test_round_trip(text):
    assert tok.decode(tok.encode(text)) == text


def test_round_trip_every_token():
    ids = list(range(tok.vocab_size))
    assert tok.encode(tok.decode(ids)) == ids


def test_unknown_character_names_it_and_its_position():
    with pytest.raises(ValueError, match=r"'Z' at position 3"):
        tok.encode("12+Z")
    with pytest.raises(ValueError, match=r"'é' at position 0"):
        tok.encode("é")


def test_unknown_or_unclosed_tag_is_an_error():
    with pytest.raises(ValueError, match=r"unknown tag '<thinking>' at position 0"):
        tok.encode("<thinking>")
    with pytest.raises(ValueError, match=r"position 2"):
        tok.encode("12<answer")


def test_decode_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="token id 99 at position 1"):
        tok.decode([1, 99])
