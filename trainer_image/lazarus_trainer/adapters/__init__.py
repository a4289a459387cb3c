"""Adapters: Lazarus for Accelerate scripts and for Hugging Face `Trainer` scripts."""
