"""The Index page (a page script of ui/app.py's navigation)."""

import sys

from loupe.ui import index_view
from loupe.ui.core import parse_args

index_view.render(parse_args(sys.argv[1:]))
