"""TuneForge: a self-hosted studio for fine-tuning Gemma models."""

__version__ = "0.1.0"
