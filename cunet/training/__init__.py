"""Training: the objective (`trainer`), validation SDR (`validation`), callbacks and the run loop."""
