"""How much the fuzz tests run, and how to make them run longer or differently.

In CI every fuzz test is bounded and deterministic: the hypothesis properties use the ``pushcluster-ci`` profile
(200 examples per test, ``derandomize=True``: the same inputs on every run, so CI never flakes; ``FUZZ_LIGHT``, a
quarter of that, for properties over a small input domain or of one targeted refusal), the live socket
fuzzers draw their hostile inputs from ``random.Random(SEED)`` and the schemathesis API test runs a fixed number
of derandomized cases per operation. No example database is written (``database=None``) and hypothesis' own
caches (constants, Unicode tables) go to ``<system temp>/pushcluster-hypothesis-<user>`` (or
``$HYPOTHESIS_STORAGE_DIRECTORY``), never into the repository (tests/fuzz/conftest.py).

Environment variables (all optional):

``PUSHCLUSTER_FUZZ_EXAMPLES=N``
    examples per hypothesis property (default 200; ``N // 4`` for the light ones, at least 50). The live fuzzers
    send ``N // 4`` hostile inputs per listener (default 50) and schemathesis runs ``N // 8`` fuzzed cases per
    operation (default 25) besides its example and coverage cases, never fewer than the defaults.
``PUSHCLUSTER_FUZZ_RANDOM=1``
    the ``pushcluster-random`` profile: new random inputs on every run, for hypothesis, for schemathesis and for
    the live fuzzers. A failing property prints its shrunk falsifying example (copy it into an explicit test); a
    whole random run replays with the same ``--hypothesis-seed=N`` and ``PUSHCLUSTER_FUZZ_SEED`` (the live seed
    is in pytest's header and in every live failure).
``PUSHCLUSTER_FUZZ_SEED=S``
    the live fuzzers' seed (default 6969); in random mode it is drawn at random unless set.

A longer run, e.g. before a release (3000 examples: 10 to 20 minutes on this 2-core machine)::

    PUSHCLUSTER_FUZZ_EXAMPLES=3000 PUSHCLUSTER_FUZZ_RANDOM=1 python -m pytest tests/fuzz -q -p no:cacheprovider \
        --hypothesis-seed=$RANDOM
"""
from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, settings

DEFAULT_EXAMPLES = 200
DEFAULT_LIGHT_EXAMPLES = 50
DEFAULT_LIVE_INPUTS = 50
DEFAULT_API_EXAMPLES = 25
DEFAULT_SEED = 6969


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    value = int(text)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


EXAMPLES = _env_int("PUSHCLUSTER_FUZZ_EXAMPLES", DEFAULT_EXAMPLES)
RANDOM = os.environ.get("PUSHCLUSTER_FUZZ_RANDOM", "") not in ("", "0")
LIGHT_EXAMPLES = max(DEFAULT_LIGHT_EXAMPLES, EXAMPLES // 4)
LIVE_INPUTS = max(DEFAULT_LIVE_INPUTS, EXAMPLES // 4)
API_EXAMPLES = max(DEFAULT_API_EXAMPLES, EXAMPLES // 8)
SEED = _env_int("PUSHCLUSTER_FUZZ_SEED", random.SystemRandom().randrange(1 << 32) if RANDOM else DEFAULT_SEED)

settings.register_profile(
    "pushcluster-ci",
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,  # a busy 2-core machine must not turn a slow example into a failure
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)
settings.register_profile("pushcluster-random", settings.get_profile("pushcluster-ci"), derandomize=False)

PROFILE = "pushcluster-random" if RANDOM else "pushcluster-ci"
# Applied as a decorator to each property, so that loading it changes nothing for tests outside tests/fuzz.
FUZZ = settings.get_profile(PROFILE)
FUZZ_LIGHT = settings(FUZZ, max_examples=LIGHT_EXAMPLES)
