"""What lives in Redis beside the jobs: the ledger (the store of record) and its records, the
claim that makes duplicate messages harmless, and the poll schedule.

May import: config (and nothing else of tasks).
"""

__all__: list[str] = []
