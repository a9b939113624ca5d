"""The HTTP benchmark behind ``bench/run``: Kanvaro against baselines, in one run.

Pure parts (the wrk output parser, ratios and targets, the result document) live in
``wrk``, ``report`` and ``plan`` and are tested on canned output (tests/bench); the parts that
start processes live in ``stack``, ``seed``, ``signin`` and ``subbench``.
"""
