"""Datasets: reading any file safely, mapping rows to Gemma conversations, validating, splitting."""
