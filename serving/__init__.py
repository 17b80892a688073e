"""Ray Serve hosting of registered checkpoints."""
