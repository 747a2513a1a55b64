"""Imported last by the party forkserver (`party_launcher.PRELOAD`): freeze the preloaded objects.

`gc.freeze()` moves every object the imports created into a permanent generation, so collections in the
forked parties never scan them (less CPU) and never write their headers (their pages stay shared instead
of being copied into each party: lower proportional memory).
"""

import gc

gc.collect()
gc.freeze()
