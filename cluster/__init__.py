"""Connecting to Ray: an embedded local cluster by default, or a given cluster address."""
