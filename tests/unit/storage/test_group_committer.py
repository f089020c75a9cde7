"""GroupCommitter on its own: how submissions become groups (no database needed).

The batch function here only records the groups it is given; what a group does in a
database is tested in ``tests/storage/test_group_commit.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from wxpaykit.storage.group_commit import GroupCommitter


class Recorder:
    """A batch function that keeps each group and answers every item with itself."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.groups.append(list(items))
        self.started.set()
        await self.release.wait()
        return list(items)


async def test_a_lone_caller_gets_a_group_of_its_own_at_once() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder)

    assert await asyncio.wait_for(committer.submit(7), timeout=1) == 7
    assert recorder.groups == [[7]]


async def test_callers_woken_by_one_event_share_one_group() -> None:
    # Like notifications whose Redis replies arrive in one read: every caller resumes
    # in the same turn of the loop and submits right after the one before.
    recorder = Recorder()
    committer = GroupCommitter(recorder)
    woken = asyncio.Event()

    async def caller(item: int) -> int:
        await woken.wait()
        return await committer.submit(item)

    callers = [asyncio.create_task(caller(item)) for item in range(6)]
    await asyncio.sleep(0)  # every caller is waiting
    woken.set()

    assert await asyncio.gather(*callers) == list(range(6))
    assert recorder.groups == [list(range(6))]


async def test_submissions_during_a_group_form_the_next_one() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder, max_in_flight=1)
    recorder.release.clear()
    first = asyncio.create_task(committer.submit(0))
    await recorder.started.wait()  # the first group is being committed
    later = [asyncio.create_task(committer.submit(item)) for item in (1, 2, 3)]
    await asyncio.sleep(0)
    assert recorder.groups == [[0]]  # nothing starts while the one group is in flight

    recorder.release.set()

    assert await asyncio.gather(first, *later) == [0, 1, 2, 3]
    assert recorder.groups == [[0], [1, 2, 3]]


async def test_groups_never_exceed_max_items() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder, max_items=4, max_in_flight=1)

    results = await asyncio.gather(*(committer.submit(item) for item in range(10)))

    assert results == list(range(10))
    assert [len(group) for group in recorder.groups] == [4, 4, 2]
    assert committer.average_group_size == 10 / 3


async def test_max_wait_gathers_callers_that_arrive_within_it() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder, max_wait_ms=50)

    async def late(item: int) -> int:
        await asyncio.sleep(0.01)
        return await committer.submit(item)

    assert list(await asyncio.gather(committer.submit(0), late(1))) == [0, 1]
    assert recorder.groups == [[0, 1]]
