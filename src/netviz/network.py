"""Whether netviz may reach the network, decided before anything tries: ``NETVIZ_OFFLINE=1``, or a
host that does not answer within a second and a half. Offline, a missing download is one line
at once (naming where to put the file), never a minute of library retries.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from urllib.parse import urlparse

PROBE_SECONDS = 1.5


def offline() -> bool:
    """``NETVIZ_OFFLINE=1``: never download anything (tests, air-gapped machines)."""
    return os.environ.get("NETVIZ_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def reachable(url: str, timeout: float = PROBE_SECONDS) -> bool:
    """Whether ``url``'s host accepts a connection within ``timeout`` seconds (name look-up
    included: it runs in a thread, since ``getaddrinfo`` takes no timeout)."""
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    if not host:
        return False
    answered: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answered.append(True)
        except OSError:
            answered.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered and answered[0])


def may_download(url: str) -> bool:
    """Not offline, and the host answers."""
    return not offline() and reachable(url)


def hub_offline() -> None:
    """Tell the Hugging Face hub (timm's weights) to read its cache only: set before it is
    imported, and in its constants when it already is."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
