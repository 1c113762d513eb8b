"""Operators of the TickStock loader."""
