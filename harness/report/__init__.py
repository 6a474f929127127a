"""Reports of a run: the terminal table, the JSON summary, the HTML page."""
