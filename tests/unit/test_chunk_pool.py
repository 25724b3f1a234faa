"""The pool a run works its chunks on (`nurture.flows.scale.ChunkPool`): started and stopped
in the background by the run itself; a start that fails fails the run with its reason and
leaves nothing running."""

from __future__ import annotations

import threading

import pytest


def test_threads_start_in_the_background_and_stop_when_closed(tmp_path):
    from nurture.flows.scale import ChunkPool
    from nurture.settings import Settings

    pool = ChunkPool(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}"), 3)
    runner = pool.runner()
    assert pool.kind == "threads" and type(runner).__name__ == "ThreadPoolTaskRunner"
    assert runner._started and runner._max_workers == 3
    pool.close()
    assert not runner._started
    assert not [t for t in threading.enumerate() if t.name.startswith("nurture-chunk-pool")]


def test_an_unreachable_dask_scheduler_fails_with_its_address_and_leaves_nothing_behind():
    import dask

    from nurture.flows.scale import ChunkPool
    from nurture.settings import Settings

    settings = Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        dask_address="tcp://127.0.0.1:9")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        pool = ChunkPool(settings, 2)
        with pytest.raises(OSError, match="127.0.0.1:9"):
            pool.runner()
        pool.close()  # nothing was started: closing neither hangs nor raises
    assert not [t for t in threading.enumerate() if t.name.startswith("nurture-chunk-pool")]
