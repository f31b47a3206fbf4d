"""One module per resource; each route parses, calls one service function, returns an XPublic."""
