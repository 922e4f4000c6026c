"""The Search page (a page script of ui/app.py's navigation)."""

import sys

from loupe.ui.core import parse_args
from loupe.ui.views import search as search_view

search_view.render(parse_args(sys.argv[1:]))
