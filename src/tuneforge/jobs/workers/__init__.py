"""Job workers, one module per kind; each runs only inside a worker process."""
