"""`python -m oomguard` is the `oomguard` command."""

import sys

from oomguard.cli import main

sys.exit(main())
