"""Java-compatible key partitioning: Kafka's murmur2 and `toPositive(hash) % partitions`."""

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def _to_signed(h: int) -> int:
    """Reinterpret an unsigned 32-bit value as Java's signed int."""
    return h - (1 << 32) if h & 0x80000000 else h


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of `data` as a signed 32-bit int (same value Java returns)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        # Java's switch falls through: 3 bytes mix all three, then multiply once.
        if tail == 3:
            h ^= data[whole + 2] << 16
        if tail >= 2:
            h ^= data[whole + 1] << 8
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return _to_signed(h)


def to_positive(h: int) -> int:
    """Java's Utils.toPositive: clear the sign bit (not abs(), which breaks on MIN_VALUE)."""
    return h & 0x7FFFFFFF


def partition_for(key: bytes | str, partitions: int) -> int:
    """Partition the Java client (and librdkafka's murmur2_random) picks for a non-null key."""
    if partitions < 1:
        raise ValueError(f"partition count must be >= 1, got {partitions}")
    raw = key.encode("utf-8") if isinstance(key, str) else key
    return to_positive(murmur2(raw)) % partitions
