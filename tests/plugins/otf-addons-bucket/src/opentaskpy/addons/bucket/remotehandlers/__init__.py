"""Remote handlers of the bucket addon."""
