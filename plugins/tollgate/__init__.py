"""Tollgate: AI-gateway plugins for Kong OSS, served by one process (plugin server + relay)."""

import os

# numpy's OpenBLAS would start a thread per core for every small matrix product (embeddings, vector search): on a
# gateway sharing its cores with Kong, those threads spin against each other and a 10 ms embedding takes 300 ms.
# One thread per product; the event loop's executor gives parallelism where it helps. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
