"""The UI's views: the Search page (``search`` with its panel, results, selected hit and
explain parts), the Atlas page and the Index page."""
