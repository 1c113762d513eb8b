"""Sensors of the TickStock loader."""
