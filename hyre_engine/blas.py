"""One BLAS thread for blocks of many small matrix products (the protocol's folds).

The protocol scores a few hundred small folds per target group: 80 x 384 embedding
differences, n x n Newton systems, K = 100 heads. OpenBLAS (numpy's and scipy's) runs
its calls on every core it was given; for products this small the threads mostly wait
for one another, and on a 2-core machine whose other core is busy (another process,
or torch's OpenMP threads still spinning after a fine-tuning step) every call waits for
a time slice: one group's methods took 15-22 s with OpenBLAS's 2 threads and 1.7-1.9 s
with one, at a load average of 3.4 (docs/results.md, issue 14). ``one_blas_thread()``
holds OpenBLAS at one thread for a block of such work; torch's threads are untouched.
The limit is process-wide while the block runs.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator


@functools.cache
def _controller():
    # Built once, after numpy and scipy have loaded their OpenBLAS (it lists the loaded
    # libraries); a limit through it costs ~0.1 ms where threadpool_limits costs ~3.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block with numpy's and scipy's BLAS on one thread, then restore them."""
    with _controller().limit(limits=1, user_api="blas"):
        yield
