"""Learner tests run torch single-threaded: the tiny models gain nothing from threads, and on a shared
2-core machine OpenMP spin-waiting made them ~30x more expensive in CPU time."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
