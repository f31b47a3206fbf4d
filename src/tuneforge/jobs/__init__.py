"""Long-running work: the job state machine, the queue, the local runner and the workers."""
