"""The Index page (a page script of ui/app.py's navigation)."""

import sys

from loupe.ui.core import parse_args
from loupe.ui.views import index as index_view

index_view.render(parse_args(sys.argv[1:]))
