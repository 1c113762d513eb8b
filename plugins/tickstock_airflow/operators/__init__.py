"""Operators of the TickStock loader: MassiveBarsToStagingOperator, TriggerJobRunOperator."""
