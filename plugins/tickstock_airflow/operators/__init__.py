"""Operators: MassiveBarsToStagingOperator."""
