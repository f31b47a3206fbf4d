"""The job kinds, one module each; every module registers its kind (`jobs/kind.py`)."""
