"""`python -m spamtune`: the CLI (what torchrun and subprocess tests launch)."""

import sys

from spamtune.cli import main

sys.exit(main())
