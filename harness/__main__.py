"""`python -m harness` is the memharness CLI."""

import sys

from harness.cli import main

sys.exit(main())
