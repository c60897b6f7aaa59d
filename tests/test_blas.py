"""one_blas_thread: OpenBLAS at one thread inside the block, as it was after it."""

import numpy as np
from threadpoolctl import threadpool_info

from hyre_engine.blas import one_blas_thread


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_one_blas_thread_holds_blas_at_one_thread_and_restores_it():
    np.ones((4, 4)) @ np.ones((4, 4))  # numpy's OpenBLAS is loaded
    before = _blas_threads()
    assert before
    with one_blas_thread():
        assert _blas_threads() == [1] * len(before)
        with one_blas_thread():  # nested blocks (evaluate_group inside calibration) are fine
            assert set(_blas_threads()) == {1}
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == before
