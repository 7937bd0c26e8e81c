"""The hostile census (`make hostile`, `python -m bench.hostile`): a real gateway process with its
REST bridge, classes of hostile input thrown at it over REST and gRPC, and one table of what
happened per class -- inputs tried, answers by status class, 5xx/INTERNAL/UNKNOWN, crashes,
hangs and the peak RSS of the gateway and of its bridge. It reports; it asserts nothing
(tests/hostile/test_census.py runs a reduced census and does).
"""
