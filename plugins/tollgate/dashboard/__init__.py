"""The built-in, read-only dashboard of the status listener (``/dashboard``) and the usage reports behind it.

``report`` sums the process's usage record (``tollgate.usage``) over a range and adds what the store knows
(budget spend, cluster-wide with ``strategy: redis``) and what the metrics registry counted; ``routes`` serves
the page, its static files (shipped in the package: no CDN) and the JSON it reads.
"""
