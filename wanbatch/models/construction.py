"""One lock for every place that makes a model in this process.

`from_pretrained` and building a model from a config both switch process-global state while they run
(transformers' and accelerate's meta-device init patches torch.nn.Module; the weights of a fresh model
come from torch's one global RNG). Two threads doing either at once corrupt each other: parameters left
on the meta device ("Cannot copy out of meta tensor"), or tiny models whose weights depend on timing.
The executor renders scenes concurrently, so every load and build takes this lock.
"""

from __future__ import annotations

import threading

CONSTRUCTION_LOCK = threading.RLock()
