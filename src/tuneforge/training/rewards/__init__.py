"""Declarative reward graders: what a GRPO run rewards and what the `rewards` evaluation suite
measures. No user code runs: each grader is a typed spec (`spec.py`) that TuneForge's own code
scores (`rules.py`, `judging.py`), combined into one weighted reward by `grade.GraderSet`.
"""
