"""The `backend` config group's schemas: one dataclass per kind of backend, and the only place their defaults live.

Each option in conf/backend/ starts with `defaults: [base_<kind>]` (registered by `wanbatch.config.schema`) and sets
only what differs: a GMI model's YAML names the backend and its model, the rest is `GmiConfig`'s. A key that is not
a field here, or a value of the wrong type, stops composition with an error naming it (exit 2).

    RemoteConfig          what the five remote backends share: endpoint, limits, `poll`, `timeouts`, `retries`
     ├── GmiConfig        GMI Cloud's request queue (gmi_wan21_i2v, gmi_wan21_flf2v, gmi_wan27_i2v)
     ├── AimlConfig       AI/ML API (aiml_wan27_i2v)
     └── NovitaConfig     Novita AI (novita_wan21_t2v)
    PreviewConfig         preview: animatics, no model
    DiffusersConfig       diffusers: Wan on this machine's devices
     └── XditConfig       xdit: one render split over several GPUs

Ranges and choices (a positive integer, one of auto|copy|compose, ...) are checked by the module that uses the
option, with `wanbatch.config.checks`, so one run reports every such problem at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class BackendConfig:
    """What every backend option has: its name, the name scenes give as `backend:`, and its price."""

    name: str = MISSING
    # USD per second of video made, for the dry run's estimate and `budget`: a number, or a mapping by resolution
    # such as {720P: 0.05, 1080P: 0.08} (checked by wanbatch.core.price). null = unknown: the provider documents
    # give no prices, so none is assumed. On a local backend it may stand for what a second of GPU time costs.
    price_per_second: Any = None


@dataclass
class PreviewConfig(BackendConfig):
    """`preview`: an animatic per scene (first frame or a title card, a slow pan/zoom, a crossfade to `last_image`,
    the driving audio laid under). No model; deterministic, so it caches like any backend."""

    name: str = "preview"
    default_resolution: str = "480P"  # for a scene that sets neither `resolution` nor `width`/`height`
    default_duration: float = 2.0  # seconds, for a scene that sets neither `duration` nor `num_frames`
    default_fps: int = 16  # for a scene without `fps`
    max_in_flight: int = 2  # animatics drawn at once
    price_per_second: Any = 0.0  # an animatic costs nothing


# -- local models ---------------------------------------------------------------------------------------------


@dataclass
class DiffusersConfig(BackendConfig):
    """`diffusers`: Wan on this machine's GPUs (or CPU). Sizes, steps, guidance, flow shift and fps come from the
    model card (wanbatch/backends/local/models/registry.py), not from here."""

    name: str = "diffusers"
    # A friendly name, a hub id, or a local diffusers folder; a scene's `model` overrides it:
    # wan2.1-t2v-1.3b | wan2.1-t2v-14b | wan2.1-i2v-14b-480p | wan2.1-i2v-14b-720p | wan2.1-flf2v-14b-720p |
    # wan2.2-t2v-a14b | wan2.2-i2v-a14b | wan2.2-ti2v-5b | tiny-t2v | tiny-i2v | tiny-flf2v (random weights,
    # built here without a download)
    model: str = "wan2.1-t2v-1.3b"
    revision: str | None = None  # hub branch, tag or commit of `model` (pin a commit to reproduce); null = main
    dtype: str = "auto"  # auto (bfloat16 on CUDA, float32 on CPU) | bfloat16 | float16 | float32
    vae_dtype: str = "float32"  # the Wan VAE is meant to run in float32
    # auto (every visible CUDA device, one render per device; else cpu) | cpu | cuda:N | [cuda:0, cuda:1]
    device: Any = "auto"
    # none | model (whole models to the GPU in turn) | group (layer groups, streamed) | sequential (least memory)
    offload: str = "none"
    vae_tiling: bool = False  # decode in tiles: less memory for 720P and long clips (slightly different pixels)
    warm_models: int = 1  # pipelines kept loaded per device; jobs on one model run back to back
    models_dir: str | None = None  # where tiny models are built; null = $WANBATCH_MODELS_DIR, else <cache dir>/models
    local_files_only: bool = False  # never download (implied by HF_HUB_OFFLINE=1); a missing model fails the plan


@dataclass
class XditConfig(DiffusersConfig):
    """`xdit`: one render split over several GPUs with xfuser sequence parallelism (Ulysses and ring), under
    torchrun. Needs CUDA and the `xdit` extra. Every option of `diffusers` applies; `offload` must stay none
    (every rank holds the whole model) and `dtype: auto` means bfloat16."""

    name: str = "xdit"
    model: str = "wan2.1-t2v-14b"
    gpus: Any = "auto"  # GPUs per render (an integer); auto = every visible GPU
    # auto = the largest the attention heads allow; it must divide them (40 for 14B/A14B, 24 for TI2V-5B, 12 for 1.3B)
    ulysses_degree: Any = "auto"
    ring_degree: Any = "auto"  # auto = the GPUs left over; cfg x ulysses_degree x ring_degree must equal gpus
    # the conditional and unconditional passes on two halves of the GPUs: xDiT's I2V pipeline only (Wan2.1
    # I2V-720P, Wan2.2 I2V-A14B). auto = there, when guidance is on and gpus is even | true | false
    cfg_parallel: Any = "auto"
    parallel_vae: bool = False  # split the VAE decode over the GPUs with DistVAE (pip install it; xDiT's own feature)
    timeout_s: float | None = None  # stop a render that takes longer; null = no limit


# -- remote APIs ------------------------------------------------------------------------------------------------


@dataclass
class PollConfig:
    """When to ask a provider whether a render is done."""

    # learn: poll first when jobs of the same backend, model, size and length were done before (the journal
    # keeps their observed render times), or ask a provider that gives an `eta` early; initial_s until then
    learn: bool = True
    initial_s: float = 20.0  # first poll this long after the provider took the job (nothing learnt, or learn off)
    interval_s: float = 10.0  # then every interval_s, growing by `backoff` up to max_interval_s, +jitter
    backoff: float = 1.5
    max_interval_s: float = 60.0
    min_interval_s: float = 1.0  # floor under a provider's `eta` hint
    # up to +20% on every wait, so parallel jobs do not poll in step (never earlier); a poll timed to the job (its
    # learnt render time, the provider's eta) takes at most 1% (backends.remote.base.TIMED_JITTER)
    jitter: float = 0.2
    timeout_s: float = 3600.0  # stop waiting (the request id stays journalled: a rerun re-attaches)


@dataclass
class TimeoutsConfig:
    """Seconds an HTTP call may take, by phase."""

    connect_s: float = 10.0
    read_s: float = 60.0
    write_s: float = 60.0
    pool_s: float = 60.0
    download_s: float = 300.0  # per read while downloading
    download_total_s: float = 1800.0  # a whole download, however slowly it trickles in


@dataclass
class RetriesConfig:
    """429 (honouring Retry-After), 5xx and timeouts are retried; a submit only where it cannot have been accepted."""

    attempts: int = 6
    initial_s: float = 1.0  # exponential backoff with jitter, from here...
    max_wait_s: float = 30.0  # ...up to here
    retry_after_max_s: float = 300.0  # a Retry-After is honoured up to this long
    total_s: float = 900.0  # no call retries for longer than this
    reconcile_wait_s: float = 3.0  # an ambiguous submit: wait this long before listing the requests a second time


@dataclass
class UploaderConfig:
    """Where local media go for a provider that takes only URLs: any fsspec target served at a public URL, e.g.
    {target: s3://bucket/x, public_url: https://bucket.s3.amazonaws.com/x} (S3, GCS, Azure need s3fs, gcsfs,
    adlfs and, where needed, `storage_options`)."""

    target: str = MISSING  # an fsspec URL: file:///srv/www/x, s3://bucket/prefix, gcs://bucket/prefix, memory://x
    public_url: str = MISSING  # the http(s) URL at which `target` is served
    storage_options: dict[str, Any] = field(default_factory=dict)  # passed to fsspec as they are


@dataclass
class RemoteConfig(BackendConfig):
    """A model behind a provider's asynchronous HTTP API. The API key is read from the environment variable
    `api_key_env` when used; it never appears in a config, a message or a log line."""

    model: str = MISSING  # the provider's id of the model
    base_url: str = MISSING  # scheme and host; point it at the fake provider to rehearse offline
    path: str = MISSING
    api_key_env: str = MISSING
    image_encoding: str = "data_uri"  # how image files travel in image-data fields: data_uri | base64
    max_in_flight: int = 4  # jobs at the provider at once, shared by its backends in the process (the strictest wins)
    requests_per_second: float | None = (
        5.0  # API calls (submit, poll, list) per second to the provider; null = no limit
    )
    # A finished video larger than this is refused (by its Content-Length, else while it is read): a storage host
    # that sends without end must not fill the disk. Generous: a 1080P 10 s clip is tens of MB.
    max_download_mb: float = 2048.0
    # API calls at once when a client starts, one more per answer, so connections open gradually (fifty submits
    # at once do not open fifty connections in one instant, which a front end may answer with resets); null = all
    # at once
    connection_ramp: int | None = 2
    poll: PollConfig = field(default_factory=PollConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    retries: RetriesConfig = field(default_factory=RetriesConfig)
    uploader: UploaderConfig | None = None  # for local files where the provider needs a URL


@dataclass
class GmiConfig(RemoteConfig):
    """GMI Cloud's request queue; an option names the backend and its `model`. Key: $GMI_API_KEY. GMI lists
    requests, so an ambiguous submit is reconciled instead of sent twice."""

    base_url: str = "https://console.gmicloud.ai"
    path: str = "/api/v1/ie/requestqueue/apikey/requests"  # docs 1-2 show /api/v1/apikey/requests on a placeholder host
    api_key_env: str = "GMI_API_KEY"
    # Frames as plain base64: the FLF2V document says "Base64 image for the first frame" (and the last;
    # seeds/gmi-wan2.1-flf2v-14b-720p.txt L59-60); the I2V one does not say how `path_to_image` is encoded
    # (seeds/gmi-wan2.1-i2v-14b-720p.txt L64), so it follows its sibling. wan2.7-i2v takes URLs only.
    image_encoding: str = "base64"


@dataclass
class AimlConfig(RemoteConfig):
    """AI/ML API's video generations. Key: $AIML_API_KEY. It cannot list requests: an ambiguous submit is
    reported, never resent."""

    base_url: str = "https://api.aimlapi.com"
    path: str = "/v2/video/generations"
    api_key_env: str = "AIML_API_KEY"
    # `image_url` is a "string · uri": "a direct link to an online image or a Base64-encoded local image"
    # (seeds/aimlapi-wan-2-7-i2v.txt L38-40): a data URI is both
    image_encoding: str = "data_uri"
    # The document polls "every 15 seconds" (seeds/aimlapi-wan-2-7-i2v.txt L103); a render takes about a minute
    poll: PollConfig = field(
        default_factory=lambda: PollConfig(initial_s=15.0, interval_s=15.0, backoff=1.0, max_interval_s=15.0)
    )


@dataclass
class NovitaConfig(RemoteConfig):
    """Novita AI's async API. Key: $NOVITA_API_KEY. Polls follow Novita's `eta` hint. It cannot list tasks: an
    ambiguous submit is reported, never resent."""

    base_url: str = "https://api.novita.ai"
    path: str = "/v3/async/wan-t2v"
    result_path: str = "/v3/async/task-result"
    api_key_env: str = "NOVITA_API_KEY"
    webhook_url: str | None = None  # optional extra.webhook.url (wanbatch still polls)
    poll: PollConfig = field(default_factory=lambda: PollConfig(initial_s=10.0, interval_s=5.0))  # interval: no eta


#: the schema of each kind, by the name an option's `defaults` list gives it (conf/backend/<name>.yaml)
BACKEND_SCHEMAS: dict[str, type[BackendConfig]] = {
    "base_preview": PreviewConfig,
    "base_diffusers": DiffusersConfig,
    "base_xdit": XditConfig,
    "base_gmi": GmiConfig,
    "base_aiml": AimlConfig,
    "base_novita": NovitaConfig,
}

__all__ = [
    "BACKEND_SCHEMAS",
    "AimlConfig",
    "BackendConfig",
    "DiffusersConfig",
    "GmiConfig",
    "NovitaConfig",
    "PollConfig",
    "PreviewConfig",
    "RemoteConfig",
    "RetriesConfig",
    "TimeoutsConfig",
    "UploaderConfig",
    "XditConfig",
]
