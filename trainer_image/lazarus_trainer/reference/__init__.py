"""The reference trainer (a small causal LM under Accelerate) and its generated data."""
