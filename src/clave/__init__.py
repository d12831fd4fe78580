"""clave: self-hosted one-time verification codes over SMS, WhatsApp, voice and email."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("clave")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
