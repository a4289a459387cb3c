"""`python -m lazarus_trainer.reference`: the reference trainer (train.py)."""

from .train import main

main()
