"""Lazarus checkpoint store: format, commit, validation, listing, retention. No torch."""
