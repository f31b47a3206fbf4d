"""Export: a fine-tuned model as files other tools run, delivered where the user wants them."""
