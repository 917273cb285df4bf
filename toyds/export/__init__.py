"""Exporting a toyds model to the tools the field uses (transformers, and TRL on top of it).

    mapping.py     which transformers class computes what a toyds model computes, and which tensor goes where
    tokenizer.py   toyds's character tokenizer as a tokenizers tokenizer.json
    hf.py          `toyds export` and `toyds import`: a checkpoint as a transformers folder, and back
"""
