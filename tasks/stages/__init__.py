"""Each stage of a job without Celery: submit, poll, collect, the sweeper, the backoff maths,
and the per-process parts they run with (`runtime`). The thin Celery tasks in `tasks/` call
these; nothing here imports Celery, so every stage is tested without a broker.

May import: tasks.store, tasks.limits, tasks.inputs, tasks.outputs, picpik, config.
"""

__all__: list[str] = []
