"""Job specs, Ray Train fine-tuning, the checkpoint registry and the `biomed` CLI."""
