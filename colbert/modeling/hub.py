"""Is a Hugging Face Hub name usable here, asked once and within a bounded time?

Without this, a hub-shaped checkpoint name that is not a local folder goes to transformers, whose download client
retries an unreachable hub for about three minutes before it fails. `hub_status` answers in at most `timeout`
seconds (at once under HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1), so a typo or an offline machine gets a
CheckpointError that names the problem before any work.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.error
import urllib.request
from typing import Optional

logger = logging.getLogger(__name__)

HUB_TIMEOUT = 3.0  # seconds to wait for the hub's answer
FOUND, MISSING, UNREACHABLE = "found", "missing", "unreachable"


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline_mode() -> bool:
    """HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set to a true value."""
    return any((os.environ.get(v) or "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_status(name: str, timeout: float = HUB_TIMEOUT) -> str:
    """FOUND when the hub answers that `name` exists, MISSING when it answers that it does not (or that it is
    private), UNREACHABLE when it gives no answer within `timeout` seconds or the machine is in offline mode."""
    if offline_mode():
        return UNREACHABLE
    result: list[str] = []

    def probe() -> None:
        try:
            request = urllib.request.Request(f"{hub_endpoint()}/api/models/{name}", method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout) as response:
                result.append(FOUND if response.status < 400 else MISSING)
        except urllib.error.HTTPError as e:  # the hub answered: 401/404 for a name it does not serve
            result.append(MISSING if e.code in (401, 403, 404) else UNREACHABLE)
        except (OSError, ValueError) as e:  # URLError, timeouts and refused connections are OSErrors
            logger.debug("Hub not reachable for %s: %s", name, e)
            result.append(UNREACHABLE)

    thread = threading.Thread(target=probe, daemon=True)  # daemon: a lookup that hangs dies with the process
    thread.start()
    thread.join(timeout)
    return result[0] if result else UNREACHABLE


def hub_reachable(name: str, timeout: float = HUB_TIMEOUT) -> bool:
    """Whether the hub answers that `name` exists within `timeout` seconds."""
    return hub_status(name, timeout) == FOUND


def in_hub_cache(name: str, files: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")) -> bool:
    """Whether one of `files` of a hub repository is already in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return any(isinstance(try_to_load_from_cache(name, f), str) for f in files)
    except ValueError:  # not a valid repo id
        return False


def hub_problem(name: str, timeout: float = HUB_TIMEOUT) -> Optional[str]:
    """Why the hub name `name` cannot be loaded here, or None when it can (in the cache, or the hub has it)."""
    if in_hub_cache(name, ("config.json",)):
        return None
    status = hub_status(name, timeout)
    if status == FOUND:
        return None
    if status == MISSING:
        return (f"{name!r} is not a local folder, and the Hugging Face Hub ({hub_endpoint()}) has no public model of "
                "that name. Check the spelling, or give a local checkpoint folder.")
    why = "offline mode is set (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE)" if offline_mode() else \
        f"the Hugging Face Hub ({hub_endpoint()}) did not answer within {timeout:g} s"
    return (f"{name!r} is not a local folder nor in the Hugging Face cache, and {why}. Give a local checkpoint "
            "folder, or connect and retry; `colbert checkpoint new --from ENCODER_DIR OUT` makes a checkpoint from a "
            "local encoder.")
