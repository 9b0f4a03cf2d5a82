from .core.config import *  # noqa: F403
from .core.config import DEFAULT_CLOSE_TIMEOUT, SETTING_NAMES, validate_seconds, validate_setting  # noqa: F401
