"""Limits every worker shares through Redis: the global rate limiter of the API's PublicKey.

May import: tasks.store (the Redis clock), picpik (its error tree), config.
"""

__all__: list[str] = []
