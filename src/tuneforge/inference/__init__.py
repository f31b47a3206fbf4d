"""Chat with models: engines, the model cache, the inference server process and its client."""
