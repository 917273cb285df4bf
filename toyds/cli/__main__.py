"""python -m toyds.cli: the `toyds` command without its entry point."""

import sys

from toyds.cli.main import main

sys.exit(main())
