"""Training building blocks the recipes share: tokenising, packing, and the loss."""
