"""Several Lua scripts in one round trip.

redis-py's own pipelines check that every script they hold is loaded (a SCRIPT EXISTS call)
before sending: a second round trip each time. Here the scripts go as EVALSHA in a plain
pipeline; one that Redis does not know (it restarted, or was flushed) is sent again on its own
through its Script object, which loads it (Redis refuses an unknown script before running
any of it, so sending it again never runs it twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

__all__ = ["ScriptCall", "run_scripts"]

ScriptCall = tuple[Script, Sequence[Any], Sequence[Any]]  # (script, keys, args)


def run_scripts(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Each script's answer, in order; any error other than an unknown script is raised."""
    if len(calls) == 1:
        script, keys, args = calls[0]
        return [script(keys=list(keys), args=list(args))]
    pipe = client.pipeline(transaction=False)
    for script, keys, args in calls:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
    answers = pipe.execute(raise_on_error=False)
    for i, answer in enumerate(answers):
        if isinstance(answer, NoScriptError):
            script, keys, args = calls[i]
            answers[i] = script(keys=list(keys), args=list(args))  # loads it, runs it once
        elif isinstance(answer, Exception):
            raise answer
    return answers
