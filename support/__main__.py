"""`python -m support up|down|build [--state DIR]`: the test control plane for people
(`make cluster`, `make cluster-down`); see support.controlplane."""

import sys

from .controlplane import main

sys.exit(main())
