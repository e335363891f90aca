"""The network lab: BRSKI roles in Linux network namespaces, as on a real network.

``topology`` describes it (pure data), ``netns`` builds and tears it down and
runs processes inside it, ``cli`` is ``brski lab up|down|status|demo``.
"""
