"""The `toyds` command (`toyds --help`).

    main.py       the parser and main(): every flag checked before any work, one-line errors, exit 2
    commands.py   train, solve, experts, pipeline, check
    quantize.py   quantize: a checkpoint and its int8 copy, measured side by side
    export.py     export and import: a checkpoint as a transformers folder, and back
"""
