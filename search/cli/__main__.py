"""``python -m loupe.search.cli``: the ``loupe`` command."""

import sys

from loupe.search.cli import main

sys.exit(main())
