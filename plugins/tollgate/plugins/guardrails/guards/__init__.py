"""Content guards that judge a text as a whole: external guard services and semantic topic guards.

Each guard is one module with one ``Guard`` class (guards/base.py). The policy builds them from
``config.guards`` and runs them side by side: on the prompt before the provider is called (``INPUT``), and on the
answer as it arrives (``OUTPUT``), over a sliding window in streams.
"""
