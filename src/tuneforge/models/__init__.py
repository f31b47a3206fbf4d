"""Gemma models: the catalog, loading, tokenizers and chat templates."""
