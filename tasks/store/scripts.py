"""Lua scripts in pipelines, without the round trip redis-py adds.

redis-py's own pipelines check that every script they hold is loaded (a SCRIPT EXISTS call)
before sending: a second round trip each time. Here a script goes into a pipeline by its text
(EVAL): Redis keeps the compiled script by its digest, and the text cannot be missing, not even
on a Redis restarted or flushed since the script was registered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import redis
from redis.client import Pipeline
from redis.commands.core import Script

__all__ = ["PipeHook", "ScriptCall", "queue_script", "run_scripts"]

ScriptCall = tuple[Script, Sequence[Any], Sequence[Any]]  # (script, keys, args)
PipeHook = Callable[[Pipeline], object]  # queues more commands on a pipeline someone sends


def queue_script(pipe: Pipeline, script: Script, keys: Sequence[Any], args: Sequence[Any]
                 ) -> None:
    """Queue one registered script on a pipeline, by its text."""
    pipe.eval(cast(str, script.script), len(keys), *keys, *args)


def run_scripts(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Each script's answer, in order, in one round trip; an error is raised."""
    if len(calls) == 1:
        script, keys, args = calls[0]
        return [script(keys=list(keys), args=list(args))]
    pipe = client.pipeline(transaction=False)
    for script, keys, args in calls:
        queue_script(pipe, script, keys, args)
    return pipe.execute()
