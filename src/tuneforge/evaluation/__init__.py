"""Evaluation of fine-tuned models: metrics, task suites and batch inference."""
