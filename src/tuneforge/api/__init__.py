"""The REST API (FastAPI), mounted under /api/v1."""
