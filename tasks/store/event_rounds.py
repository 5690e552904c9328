"""The outbox's round on the events stream, in Redis: both consumer groups read, every event
folded into the metrics' totals, and every webhook-group event acknowledged unless it is a
finished job's whose job names a webhook URL, all in one script. Only those few events come
back to Python (to build their deliveries, tasks/stages/outbox.py); the others are never sent
over the wire, so a busy stream costs the worker one small answer per round, not two copies of
every event to parse.

An idle outbox waits with a blocking XREAD for anything newer than the stream's last entry at
the end of the previous round, sent in the same round trip as the next round (a script cannot
block).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from tasks.store.ledger import EVENTS_STREAM
from tasks.store.metrics import APPLY_FUNCTIONS, BOUNDS_JSON, METRIC_KEYS
from tasks.store.scripts import ScriptCall, queue_script
from tasks.store.stream import Entry

__all__ = ["EventRounds", "RoundResult"]

# ack_plain(group, rows): rows {{entry id, job id ('' = not a finished job's event)}}.
# Acknowledges each entry whose job names no webhook URL (nothing to deliver: most of them,
# known without reading whole records); returns the others' positions in rows, unacknowledged.
_ACK_PLAIN_FUNCTION = """
local function ack_plain(group, rows)
  local named = {}
  for i, e in ipairs(rows) do
    local url = e[2] ~= '' and redis.call('HGET', 'cutout:job:' .. e[2], 'webhook_url')
    if url and url ~= '' then
      table.insert(named, i)
    else
      redis.call('XACK', KEYS[1], group, e[1])
    end
  end
  return named
end
"""

# KEYS: stream. ARGV: group, JSON rows as ack_plain takes them.
_ACK_PLAIN = _ACK_PLAIN_FUNCTION + """
return ack_plain(ARGV[1], cjson.decode(ARGV[2]))
"""

# KEYS: METRIC_KEYS, then optionally the webhook deliveries' due set. ARGV: metrics group,
# webhooks group, consumer, count, JSON bucket bounds. Returns {events read by the larger
# group, {{entry id, {field, value, ...}} of the named finished jobs' events}, the stream's last
# entry id ('0-0' when empty), seconds until the first delivery is due ('-1': none, or no set)}.
_ROUND = APPLY_FUNCTIONS + _ACK_PLAIN_FUNCTION + """
local finished = {FINISHED}
local function read(group)
  local r = redis.call('XREADGROUP', 'GROUP', group, ARGV[3], 'COUNT', ARGV[4],
                       'STREAMS', KEYS[1], '>')
  if r then return r[1][2] end
  return {}
end
local m = read(ARGV[1])
local rows = {}
for _, e in ipairs(m) do table.insert(rows, metric_row(e[1], e[2])) end
apply_rows(ARGV[1], rows, cjson.decode(ARGV[5]))
local w = read(ARGV[2])
local plain = {}
for _, e in ipairs(w) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  local job = ''
  if finished[f['type'] or ''] then job = f['job_id'] or '' end
  table.insert(plain, {e[1], job})
end
local named = {}
for _, i in ipairs(ack_plain(ARGV[2], plain)) do table.insert(named, w[i]) end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local due = '-1'
if KEYS[5] then
  local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  if #first > 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    due = string.format('%.3f', math.max(0, tonumber(first[2]) - now))
  end
end
return {math.max(#m, #w), named, last[1] and last[1][1] or '0-0', due}
"""


@dataclass(frozen=True)
class RoundResult:
    read: int  # events the larger of the two groups read
    named: list[Entry]  # finished jobs' events whose job names a webhook URL (unacknowledged)
    last_id: str  # the stream's last entry when the round ran
    next_due_s: float | None  # until the first webhook delivery is due (None: none, unasked)


class EventRounds:
    """The round script and its companion for events read some other way (reclaimed)."""

    def __init__(self, client: redis.Redis, finished_events: Sequence[str]) -> None:
        self.redis = client
        kinds = ", ".join(f"['{kind}'] = true" for kind in finished_events)
        self.finished_events = tuple(finished_events)
        self._round = client.register_script(_ROUND.replace("FINISHED", kinds))
        self._ack_plain = client.register_script(_ACK_PLAIN)

    def run(self, groups: tuple[str, str], consumer: str, count: int,
            wait: tuple[str, int] | None, due_key: str | None = None) -> RoundResult:
        """One round for (metrics group, webhooks group) as `consumer`, reading up to `count`
        events in each; with wait = (last id, ms), first waits up to ms for an event newer
        than last id (one round trip either way). With `due_key` (the deliveries' due set),
        the result tells when the first delivery is due."""
        keys = METRIC_KEYS + ([due_key] if due_key else [])
        args: list[str | int] = [groups[0], groups[1], consumer, count, BOUNDS_JSON]
        if wait is None:
            return _result(self._round(keys=keys, args=args))
        pipe = self.redis.pipeline(transaction=False)
        pipe.xread({EVENTS_STREAM: wait[0]}, count=1, block=wait[1])
        queue_script(pipe, self._round, keys, args)
        return _result(pipe.execute()[1])

    def ack_plain_call(self, group: str, entries: Sequence[Entry]) -> ScriptCall | None:
        """As the round does for `entries` of the webhooks `group`: the script call that
        acknowledges all but the named finished jobs' events, answering the positions of
        those (None when there are no entries)."""
        if not entries:
            return None
        rows = [[entry_id, f.get("job_id", "") if f.get("type") in self.finished_events
                 else ""] for entry_id, f in entries]
        return self._ack_plain, [EVENTS_STREAM], [group, json.dumps(rows)]


def _result(answer: Any) -> RoundResult:
    read, named, last_id, due = answer
    entries = [(str(entry_id), dict(zip(kv[::2], kv[1::2], strict=True)))
               for entry_id, kv in named]
    return RoundResult(int(read), entries, str(last_id), None if float(due) < 0 else float(due))
