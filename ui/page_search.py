"""The Search page (a page script of ui/app.py's navigation)."""

import sys

from loupe.ui import search_view
from loupe.ui.core import parse_args

search_view.render(parse_args(sys.argv[1:]))
