"""Deterministic ids in each API's format."""
from __future__ import annotations

import random
import string

_ALNUM = string.ascii_letters + string.digits
_SF_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def stripe_id(rng: random.Random, prefix: str) -> str:
    """Stripe style id, e.g. cus_Nf3kLq0aZp9XbC."""
    # The draws of `rng.choice(_ALNUM)` (6 random bits, redrawn while >= 62) without its per-call cost:
    # seeding 100,000 objects draws 300,000 ids, and a seed keeps giving the same ids.
    draw, chars = rng.getrandbits, []
    while len(chars) < 14:
        bits = draw(6)
        if bits < len(_ALNUM):
            chars.append(_ALNUM[bits])
    return prefix + "_" + "".join(chars)


def salesforce_id(prefix: str, serial: int) -> str:
    """An 18-character Salesforce id: 3-char key prefix, pod, serial, checksum suffix."""
    base = f"{prefix}5g00000{serial:05d}"[:15]
    return base + _sf_checksum(base)


def _sf_checksum(base15: str) -> str:
    """The case-safe suffix: one char per 5-char chunk, encoding which chars are upper case."""
    # Salesforce turns a case-sensitive 15-char id into 18 chars this way (documented algorithm).
    out = []
    for chunk in range(3):
        bits = 0
        for pos, char in enumerate(base15[chunk * 5:chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << pos
        out.append(_SF_SUFFIX[bits])
    return "".join(out)


def uuid_from(rng: random.Random) -> str:
    """A UUID4-shaped string drawn from `rng` (deterministic, unlike uuid.uuid4)."""
    hexes = f"{rng.getrandbits(128):032x}"
    return f"{hexes[:8]}-{hexes[8:12]}-4{hexes[13:16]}-a{hexes[17:20]}-{hexes[20:32]}"
