"""Open Task Framework compatibility: config directories, templating, tasks and batches."""
