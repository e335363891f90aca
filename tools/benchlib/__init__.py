"""The parts of ``make bench`` (tools/bench.py), one responsibility each.

* :mod:`benchlib.procs`: CPU time and peak RSS of processes, from ``/proc``;
* :mod:`benchlib.ceilings`: what ``openssl s_server`` and a bare aiohttp
  exchange cost, the floors our servers are compared with;
* :mod:`benchlib.stores`: stores created, preloaded and paged through;
* :mod:`benchlib.est`: the EST ``/simpleenroll`` comparison (``make bench-est``).
"""
