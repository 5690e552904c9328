"""Where results go: the output store (files named after the input, never another job's).

May import: tasks.store, config.
"""

__all__: list[str] = []
