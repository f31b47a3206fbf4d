"""Repositories: the only way to read owned rows, always filtered by owner."""
