"""The edge agent runtime: sources -> detector -> tracker -> rules -> events -> outbox -> MQTT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edge-agent")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
