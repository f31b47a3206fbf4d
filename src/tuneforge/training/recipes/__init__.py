"""Training recipes: setup, train, save (one module per trainer)."""
