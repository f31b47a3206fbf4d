"""Training building blocks the recipes share: tokenising and packing, the loss and answer
log-probabilities with the head only where needed, preference records and losses, the training
loop (optimizer, metrics, evaluations, checkpoints, resume) and saving the model."""
