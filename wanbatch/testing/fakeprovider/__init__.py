"""A fake GMI Cloud, AI/ML API and Novita AI on 127.0.0.1: a real HTTP server for tests and rehearsals.

Like moto for AWS: it speaks the five video protocols wanbatch drives (see ../shared/API_NOTES.md), checks
payloads as the providers' documents do, serves tiny real mp4s, counts submissions and polls per model
(GET /_fake/stats), and misbehaves on request: 429 with Retry-After, 500/502/503, slow or dropped answers,
malformed JSON, failed/cancelled jobs, 404 or truncated downloads, expired video URLs. Holds keep jobs
running, or requests unanswered, until released, so a test acts at a known moment instead of after a
guessed latency. Example::

    from wanbatch.testing.fakeprovider import FakeProvider

    with FakeProvider(latency_s=2) as fake:
        fake.fault("503", phase="poll", times=2)
        hold = fake.hold("download")            # downloads wait before their first byte
        # wanbatch ... backend.base_url={fake.url}
        hold.wait_arrivals(1); hold.release()
        print(fake.stats()["polls"])

From a shell: `python -m wanbatch.testing.fakeprovider --port 8765` (see --help).
"""

from wanbatch.testing.fakeprovider.server import FakeProvider
from wanbatch.testing.fakeprovider.state import FAULT_KINDS, PHASES, Fault, Hold, Settings

__all__ = ["FAULT_KINDS", "PHASES", "FakeProvider", "Fault", "Hold", "Settings"]
