"""The kernel side: bcc-compiled TC program, pinned maps, attach, and typed map writes."""

from enforcer.datapath.layout import DEFAULT_PIN_ROOT, DatapathConfig, LayoutMismatchError
from enforcer.datapath.writer import Datapath, MapFullError

__all__ = ["DEFAULT_PIN_ROOT", "Datapath", "DatapathConfig", "LayoutMismatchError",
           "MapFullError"]
