"""The same-cutout index and the credit budgets on a real Redis, without workers: who pays,
who waits, who reuses; reservations that never pass a budget and settle once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from tasks.stages.budget import resume_held
from tasks.store.budgets import HELD_JOBS, Budgets
from tasks.store.dedupe import DedupeIndex, content_key
from tasks.store.ledger import Ledger
from tasks.store.records import JobState


@pytest.fixture
def ledger(redis_url: str) -> Ledger:
    return Ledger.from_url(redis_url)


def test_the_content_key_is_the_bytes_and_the_options_not_the_names() -> None:
    image = b"\x89PNG same bytes"
    assert content_key(image, {"ErodeSize": 5, "OnlyMask": True}) == \
        content_key(image, {"OnlyMask": True, "ErodeSize": 5})
    assert content_key(image, {}) != content_key(image, {"ErodeSize": 5})
    assert content_key(image, {}) != content_key(image + b"\0", {})


def test_of_many_jobs_checking_at_once_exactly_one_pays(ledger: Ledger) -> None:
    index = DedupeIndex(ledger.redis, 3600)
    ids = [f"j{i}" for i in range(40)]
    ledger.create_many([(job_id, "/in/a.png") for job_id in ids], {})
    with ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(lambda job_id: index.check("k", job_id).verdict, ids))
    assert verdicts.count("pay") == 1 and verdicts.count("wait") == 39


def test_twins_wait_for_a_live_owner_reuse_a_finished_one_and_replace_a_failed_one(
        ledger: Ledger) -> None:
    index = DedupeIndex(ledger.redis, 3600)
    ledger.create_many([("owner", "/in/a.png"), ("twin", "/in/b.png"),
                        ("third", "/in/c.png")], {})
    assert index.check("k", "owner").verdict == "pay"
    assert index.check("k", "owner").verdict == "pay"  # its own key, on a later attempt
    assert index.check("k", "twin").verdict == "wait"
    ledger.transition("owner", [JobState.ACCEPTED], JobState.SUCCEEDED)
    assert (index.check("k", "twin").verdict, index.check("k", "twin").owner) == (
        "reuse", "owner")
    assert index.take_over("k", "owner", "twin") and not index.take_over("k", "owner", "third")
    ledger.fail("twin", [JobState.ACCEPTED], "submit", "x", "failed")
    assert index.check("k", "third").verdict == "pay"  # one waiter goes on to pay
    assert index.peek("k") == "third"


def test_racing_reservations_never_pass_the_daily_budget(ledger: Ledger) -> None:
    budgets = Budgets(ledger.redis, "PUB", 5)
    ids = [f"j{i}" for i in range(30)]
    ledger.create_many([(job_id, "/in/a.png") for job_id in ids], {})
    with ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(lambda job_id: budgets.reserve(job_id, 1.0), ids))
    assert sum(v.verdict == "ok" for v in verdicts) == 5
    assert {v.why for v in verdicts if v.verdict == "hold"} == {"daily"}
    today = budgets.today()
    assert (today.spent, today.reserved, today.room) == (0, 5, 0)


def test_a_reservation_is_booked_once_per_job_and_settled_once(ledger: Ledger) -> None:
    budgets = Budgets(ledger.redis, "PUB", 0)
    ledger.create("j", "/in/a.png", {}, batch="b")
    budgets.set_batch("b", 3)
    assert budgets.reserve("j", 1.0).verdict == "ok"
    assert budgets.reserve("j", 1.0).verdict == "ok"  # a second attempt of the same job
    assert budgets.batch("b").reserved == 1
    assert budgets.settle("j", 1.0) and not budgets.settle("j", 1.0)
    assert (budgets.batch("b").spent, budgets.batch("b").reserved) == (1, 0)
    assert (budgets.today().spent, budgets.today().reserved) == (1, 0)
    ledger.create("k", "/in/b.png", {}, batch="b")
    assert budgets.reserve("k", 1.0).verdict == "ok" and budgets.settle("k", None)
    assert (budgets.batch("b").spent, budgets.batch("b").reserved) == (1, 0)
    assert budgets.reserve("nobody", 1.0).verdict == "missing"
    assert not ledger.redis.exists("cutout:job:nobody")


def test_held_jobs_go_on_only_as_far_as_the_budgets_have_room(ledger: Ledger) -> None:
    budgets = Budgets(ledger.redis, "PUB", 0)
    ids = [f"h{i}" for i in range(5)]
    ledger.create_many([(job_id, f"/in/{job_id}.png") for job_id in ids], {}, batch="b")
    for job_id in ids:
        done, _ = ledger.transition(job_id, [JobState.ACCEPTED], JobState.ON_HOLD,
                                    fields={"hold_reason": "batch"}, index=(HELD_JOBS, True))
        assert done
    assert ledger.batch_counts("b") == {"ON_HOLD": 5}
    assert ledger.state_counts() == {"ON_HOLD": 5}
    budgets.set_batch("b", 2)
    assert [job_id for job_id, _ in resume_held(ledger, budgets, 1.0)] == ids[:2]
    assert ledger.batch_counts("b") == {"ACCEPTED": 2, "ON_HOLD": 3}
    assert ledger.redis.zcard(HELD_JOBS) == 3
    budgets.set_batch("b", 0)
    assert len(resume_held(ledger, budgets, 1.0)) == 3
    assert ledger.state_counts() == {"ACCEPTED": 5} and ledger.redis.zcard(HELD_JOBS) == 0


def test_a_daily_budget_set_in_redis_overrides_the_setting(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    budgets = Budgets(client, "PUB", 50)
    assert budgets.daily_limit() == 50
    budgets.set_daily(0)
    assert budgets.daily_limit() == 0 and budgets.today().room == float("inf")
