"""One lock for every place that makes a model in this process.

`from_pretrained` and building a model from a config both switch process-global state while they run
(transformers' and accelerate's meta-device init patches torch.nn.Module; the weights of a fresh model
come from torch's one global RNG). Two threads doing either at once corrupt each other: parameters left
on the meta device ("Cannot copy out of meta tensor"), or tiny models whose weights depend on timing.
The executor renders scenes concurrently, so every load and build takes this lock.

The first use of a diffusers or transformers name takes it too (`diffusers_attr`): both import their
submodules lazily, on first attribute access, and two threads doing that at once (or one doing it while
another builds a model, which imports more of them) see each other's half-imported modules:
"cannot import name 'AutoTokenizer' from 'transformers'", a scene failed for nothing.
"""

from __future__ import annotations

import threading
from typing import Any

from wanbatch.backends.local.models.quiet import quiet_libraries

CONSTRUCTION_LOCK = threading.RLock()


def diffusers_attr(name: str) -> Any:
    """`diffusers.<name>` (a pipeline or model class, a util), resolved under the lock."""
    with CONSTRUCTION_LOCK:
        import diffusers

        quiet_libraries()
        return getattr(diffusers, name)
