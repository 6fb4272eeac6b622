"""`bgt`: start, follow, list, show and cancel tasks from the terminal, over the REST API only."""
