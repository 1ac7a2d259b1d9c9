"""`python -m tessera.cli` runs the `tessera` command (torchrun uses this form)."""

import sys

from tessera.cli.main import main

sys.exit(main())
