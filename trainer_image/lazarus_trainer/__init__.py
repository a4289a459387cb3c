"""Lazarus trainer library: full-state checkpoints, graceful SIGTERM saves, exact resume."""
