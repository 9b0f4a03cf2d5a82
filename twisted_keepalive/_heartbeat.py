from .core.verdict import Cause as Cause
from .core.verdict import Timeout as Timeout
