class WeirError(Exception):
    """An error in a job; the task fails with its message."""
