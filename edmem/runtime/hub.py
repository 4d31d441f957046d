"""Fail fast on a model-hub name that cannot be reached (offline machines, ``HF_HUB_OFFLINE=1``).

Why: ``--model_name facebook/bart-large`` on a machine without network spent minutes in the hub
client's retries and then failed with an inner Python error. :func:`resolve_model_name` decides
within seconds: a local directory is used as is; a hub name is used as is when the hub answers;
otherwise a cached copy (the hub client's cache) is used by its local path, and without one a
:class:`HubUnavailableError` says what to do. Pure Python; ``huggingface_hub`` is imported only
for the cache look-up.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from edmem.errors import EDMemError

#: A hub repository id: ``name`` or ``owner/name`` (anything else is meant as a local path).
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
#: Seconds allowed to learn whether the hub answers at all.
PROBE_TIMEOUT = 3.0
_TRUE = ("1", "true", "yes", "on")


class HubUnavailableError(EDMemError):
    """A hub name was given, the hub cannot be reached and no cached copy exists."""


def offline_by_environment() -> bool:
    """``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set to a true value."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to the hub endpoint opens within ``timeout`` seconds (name
    resolution included: it runs in a thread so a hanging resolver cannot block us)."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme != "http" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def cached_copy(name: str) -> str | None:
    """The local folder of a cached hub snapshot of ``name``, or None."""
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(name, local_files_only=True)
    except Exception:  # not cached, malformed name, no huggingface_hub: no cached copy
        return None


def resolve_model_name(name: str, flag: str = "--model_name") -> str:
    """What to pass to ``from_pretrained``: ``name`` itself, or the path of its cached copy when
    the hub cannot be reached. Raises :class:`HubUnavailableError` (one clear line) otherwise."""
    if Path(name).exists():
        return name
    if not _REPO_ID.fullmatch(name):
        raise HubUnavailableError(f"{flag} {name}: directory not found (and not a hub name "
                                  "like 'facebook/bart-large')")
    offline = offline_by_environment()
    if not offline and hub_reachable():
        return name
    cached = cached_copy(name)
    if cached is not None:
        return cached
    why = "HF_HUB_OFFLINE is set" if offline else "the model hub cannot be reached (no network?)"
    raise HubUnavailableError(
        f"{flag} {name}: not a local directory, and {why} with no cached copy of it. Pass a local "
        "directory holding config.json + vocab.json + merges.txt (a BART model saved with "
        "save_pretrained, or the tokenizer folder `edmem demo` writes), or download it once on a "
        "machine with network so that a cached copy exists")
