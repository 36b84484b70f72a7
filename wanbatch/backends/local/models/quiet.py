"""Keep diffusers', transformers' and huggingface_hub's chatter off the console, never their errors.

Each library prints through a handler of its own (so Hydra's console filter never sees it) and draws tqdm bars
("Writing model shards: 100%|...|" for every tiny build, one per load). `quiet_libraries()` turns the bars off and
hands their log records to Python's root logger instead of their own handler: under the `wanbatch` command that
means the run's wanbatch.log gets every warning ("CLIPImageProcessor requires torchvision", deprecations) and the
console only the errors (wanbatch.cli.logs.ConsoleFilter). Idempotent; called before wanbatch first uses them.
"""

from __future__ import annotations

import contextlib
import threading

_done = threading.Event()
_lock = threading.Lock()


def quiet_libraries() -> None:
    if _done.is_set():
        return
    with _lock:
        if _done.is_set():
            return
        with contextlib.suppress(ImportError):
            import huggingface_hub.utils

            huggingface_hub.utils.disable_progress_bars()
        for name in ("diffusers", "transformers"):
            with contextlib.suppress(ImportError):
                logging_utils = __import__(f"{name}.utils.logging", fromlist=["logging"])
                logging_utils.disable_progress_bar()
                logging_utils.disable_default_handler()
                logging_utils.enable_propagation()
        _done.set()


__all__ = ["quiet_libraries"]
