"""Where results go: the output store (files named after the input, never another job's), and
the webhooks (signed event bodies, deliveries kept in Redis; tasks/stages/deliver.py sends them).

May import: tasks.store, picpik (its error tree), config.
"""

__all__: list[str] = []
