"""Synthetic training data from documents: a model (an OpenAI-compatible endpoint or a local
TuneForge model) writes question/answer pairs, instructions, summaries or step-by-step answers
for each chunk of a document (`generator`, `templates`, `pipeline`), and curation keeps the
grounded, distinct, well-formed ones (`curate`). See docs/synthesis.md.

Import the modules themselves: this package imports nothing, so that `evaluation.judge` can
share the generator's HTTP client without an import circle.
"""
