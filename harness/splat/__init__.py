"""Kernel splat detection: console text → titled, de-duplicated ``Splat`` records."""

from harness.splat.model import Splat
from harness.splat.stream import SplatStream, parse_log

__all__ = ["Splat", "SplatStream", "parse_log"]
