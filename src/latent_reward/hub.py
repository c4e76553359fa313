"""The Hugging Face Hub: switch to offline mode at once when it cannot be reached.

Without this, a model or dataset id that is not cached makes huggingface_hub retry for about 30 s
and print dozens of warnings before failing the same way; in offline mode it fails at once with
one clear message (and cached files still load).
"""

from __future__ import annotations

import os
import socket
import sys

HOST = "huggingface.co"


def offline_if_unreachable(timeout: float = 3.0) -> bool:
    """True when offline mode is (now) on: set by the user, or because the Hub did not answer."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    endpoint = os.environ.get("HF_ENDPOINT", "")
    host = endpoint.split("//")[-1].split("/")[0].split(":")[0] if endpoint else HOST
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return False
    except OSError:
        pass
    os.environ["HF_HUB_OFFLINE"] = "1"
    for module_name, attribute in (
        ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_HUB_OFFLINE"),
    ):
        module = sys.modules.get(module_name)
        if module is not None:
            setattr(module, attribute, True)
    return True
