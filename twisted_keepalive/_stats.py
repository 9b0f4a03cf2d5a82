from .core.stats import *  # noqa: F403
from .core.stats import LATENCY_BUCKETS, LATENESS_BUCKETS, KeepaliveStats, ReactorLag, collect_stats  # noqa: F401
