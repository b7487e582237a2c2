import sys

from spamtune.cli import main

sys.exit(main())
