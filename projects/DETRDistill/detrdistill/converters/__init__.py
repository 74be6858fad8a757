"""Checkpoint converters from other toolboxes to detrdistill models."""
