"""Untrusted input, kept outside: fetching a reference (files under a root, guarded URLs),
the address guard, and the header-only image checks.

May import: picpik (its error tree), config.
"""

__all__: list[str] = []
