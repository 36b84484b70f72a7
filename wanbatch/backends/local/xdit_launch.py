"""One Wan render over several GPUs with xfuser sequence parallelism, launched under torchrun.

The xdit backend writes a job file (what to load, the canonical params, input paths, where the clip
goes) and runs::

    python -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node=N \\
        -m wanbatch.backends.local.xdit_launch JOB.json

Every rank loads the pipeline with xfuser's sequence-parallel Wan transformer
(`xFuserWanTransformer3DWrapper`: Ulysses all-to-all and ring attention over the token sequence),
renders with the same `call_pipeline` as the diffusers backend (same CPU-seeded noise), and rank 0
encodes the clip. Where xDiT has them for the model, its own speed features are used: CFG parallel (the
conditional and unconditional passes on two halves of the GPUs) through its image-to-video pipeline
`xFuserWanImageToVideoPipeline`, and a VAE decode split over the GPUs with DistVAE (`parallel_vae`). xfuser
is imported only inside the worker: its import needs CUDA.

The launch plan and the degree rules are plain functions, tested without a GPU.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MIN_XFUSER = "0.5.0"  # first release with xFuserWanTransformer3DWrapper


@dataclass(frozen=True)
class Degrees:
    """How the GPUs split one render: `cfg` groups (2: the conditional and unconditional passes side by side),
    each splitting the token sequence over `ulysses` x `ring` ranks."""

    ulysses: int
    ring: int
    cfg: int = 1

    @property
    def world(self) -> int:
        return self.ulysses * self.ring * self.cfg

    def describe(self) -> str:
        return f"{self.world} GPUs: ulysses {self.ulysses} x ring {self.ring} x cfg {self.cfg}"


def plan_degrees(
    gpus: int, heads: int, ulysses: int | None = None, ring: int | None = None, cfg: int = 1
) -> tuple[Degrees | None, list[tuple[str, str]]]:
    """Check (or choose, where None) the Ulysses and ring degrees for `gpus` GPUs and a transformer with
    `heads` attention heads (0 = unknown, not checked), with `cfg` GPU groups for CFG parallel. Returns
    (degrees, problems), a problem being (option, what is allowed); degrees is None when there is a problem.
    The rules: cfg x ulysses x ring == gpus, and the Ulysses degree divides the heads (each rank attends over
    heads / ulysses of them for the whole sequence, after an all-to-all)."""
    if gpus < 1:
        return None, [("gpus", f"at least one GPU (found {gpus})")]
    if cfg > 1:
        if gpus % cfg:
            return None, [("cfg_parallel", f"false or auto with {gpus} GPUs: CFG parallel needs an even count")]
        deg, problems = plan_degrees(gpus // cfg, heads, ulysses, ring)
        problems = [(o, m.replace("GPU count", "GPUs per CFG half")) for o, m in problems]
        return (None if deg is None else Degrees(deg.ulysses, deg.ring, cfg)), problems
    problems = [
        (name, f"`{name}` >= 1, not {value}")
        for name, value in (("ulysses_degree", ulysses), ("ring_degree", ring))
        if value is not None and value < 1
    ]
    if problems:
        return None, problems
    if ulysses is None and ring is None:
        # the largest Ulysses degree the heads allow (all-to-all is cheaper than ring passes), ring for the rest
        ulysses = max(d for d in _divisors(gpus) if not heads or heads % d == 0)
        ring = gpus // ulysses
    elif ulysses is None:
        assert ring is not None
        if gpus % ring:
            return None, [("ring_degree", f"a divisor of the {gpus} GPUs, not {ring}")]
        ulysses = gpus // ring
    elif ring is None:
        if gpus % ulysses:
            return None, [("ulysses_degree", f"a divisor of the {gpus} GPUs, not {ulysses}")]
        ring = gpus // ulysses
    deg = Degrees(ulysses, ring)
    if deg.world != gpus:
        problems.append(
            (
                "ulysses_degree",
                f"`ulysses_degree` x `ring_degree` equal to the GPU count {gpus}; {ulysses} x {ring} = {deg.world}",
            )
        )
    if heads and heads % deg.ulysses:
        ok = [d for d in _divisors(gpus) if heads % d == 0]
        problems.append(
            (
                "ulysses_degree",
                f"a divisor of the model's {heads} attention heads, not {deg.ulysses}; with {gpus} "
                f"GPUs use one of {', '.join(map(str, ok))} (and `ring_degree` for the rest)",
            )
        )
    return (None if problems else deg), problems


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class LaunchPlan:
    """The command that runs one job over `nproc` GPUs, and the environment it adds."""

    argv: list[str]
    env: dict[str, str]
    nproc: int
    job_file: Path

    def describe(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in sorted(self.env.items()))
        return f"{env} {' '.join(self.argv)}".strip()


def launch_plan(
    job_file: Path, nproc: int, *, python: str | None = None, visible_devices: Sequence[int] | None = None
) -> LaunchPlan:
    """torchrun (as `python -m torch.distributed.run`, so it is this interpreter's torch) on one node,
    with a free rendezvous port (`--standalone`), `nproc` ranks running this module."""
    argv = [
        python or sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc_per_node={nproc}",
        "-m",
        "wanbatch.backends.local.xdit_launch",
        str(job_file),
    ]
    # one CPU thread per rank: the GPUs do the work, and N ranks x all cores would oversubscribe the CPU
    env = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in visible_devices)
    return LaunchPlan(argv=argv, env=env, nproc=nproc, job_file=job_file)


def write_job(
    path: Path,
    *,
    load: Any,
    params: Mapping[str, Any],
    images: Mapping[str, Path],
    audio: Path | None,
    out: Path,
    encode: Mapping[str, Any],
    degrees: Degrees,
    parallel_vae: bool,  # from the job's params (`parallel.vae`), as the key saw it
    frames_out: Path | None = None,
) -> Path:
    """The job file a worker reads: everything it needs, nothing it must look up."""
    doc = {
        "parallel_vae": parallel_vae,
        "load": asdict(load),
        "params": dict(params),
        "images": {k: str(v) for k, v in images.items()},
        "audio": str(audio) if audio else None,
        "out": str(out),
        "frames_out": str(frames_out) if frames_out else None,
        "encode": dict(encode),
        "degrees": asdict(degrees),
    }
    path.write_text(json.dumps(doc, indent=1, sort_keys=True))
    return path


# -- the worker (runs on every rank) --------------------------------------------------------------------
def run_worker(job: Mapping[str, Any]) -> int:
    import numpy as np
    import torch
    import torch.distributed as dist

    from wanbatch.av.encode import EncodeSettings, write_clip
    from wanbatch.backends.local.pipelines import (
        LoadSpec,
        _dtype_kwarg,
        call_pipeline,
        load_images,
        load_pipeline,
        torch_dtype,
    )

    # 1. xfuser, imported here only: its import initialises CUDA pieces
    try:
        from xfuser import xFuserArgs
        from xfuser.core.distributed import get_runtime_state, get_world_group, initialize_runtime_state
        from xfuser.model_executor.models.transformers.transformer_wan import xFuserWanTransformer3DWrapper
    except ImportError as exc:
        print(
            f"wanbatch.backends.local.xdit_launch: xfuser >= {MIN_XFUSER} with Wan support is needed "
            f"(pip install 'wanbatch[xdit]'): {exc}",
            file=sys.stderr,
        )
        return 3
    load = LoadSpec(**job["load"])
    deg = Degrees(**job["degrees"])
    parallel_vae = bool(job.get("parallel_vae"))

    # 2. The process group and xfuser's parallel state (ranks; CFG, Ulysses, ring and VAE groups)
    features: dict[str, Any] = {}
    if deg.cfg > 1:
        features["use_cfg_parallel"] = True
    if parallel_vae:
        features["use_parallel_vae"] = True
    engine_args = xFuserArgs(model=load.source, ulysses_degree=deg.ulysses, ring_degree=deg.ring, **features)
    engine_config, _input_config = engine_args.create_config()
    local_rank = get_world_group().local_rank
    device = "cpu"  # only where there is no CUDA at all: the worker's own tests
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"

    # 3. The pipeline, with xfuser's sequence-parallel transformer(s) in place of diffusers' own
    index = _model_index(load)
    components = {}
    for name in ("transformer", "transformer_2"):
        if (index.get(name) or [None])[0] is not None:
            components[name] = xFuserWanTransformer3DWrapper.from_pretrained(
                load.source,
                subfolder=name,
                revision=load.revision,
                local_files_only=load.local_files_only,
                **{_dtype_kwarg(): torch_dtype(load.dtype)},
            )
    cls = None
    if deg.cfg > 1:  # CFG parallel lives in xDiT's own image-to-video pipeline, not in the transformer
        from xfuser.model_executor.pipelines.pipeline_wan_i2v import xFuserWanImageToVideoPipeline

        cls = xFuserWanImageToVideoPipeline
    pipe = load_pipeline(load, device, cls=cls, **components)
    initialize_runtime_state(pipe, engine_config)
    if parallel_vae:
        _split_vae_decode(pipe)

    # 4. Render: the same call, the same CPU-seeded noise as the diffusers backend
    images = load_images({k: Path(v) for k, v in job["images"].items()})
    frames = call_pipeline(pipe, job["params"], images)

    # 5. Rank 0 writes the clip
    if dist.get_rank() == 0:
        if job.get("frames_out"):
            np.save(job["frames_out"], frames)
        write_clip(
            frames,
            Path(job["out"]),
            fps=float(job["params"]["fps"]),
            settings=EncodeSettings(**job["encode"]),
            audio=Path(job["audio"]) if job.get("audio") else None,
        )
    dist.barrier()
    get_runtime_state().destroy_distributed_env()
    return 0


def _split_vae_decode(pipe: Any) -> None:
    """The VAE decode split over xfuser's VAE group with DistVAE's adapter, as xDiT's Wan runners do (its Wan
    adapter where this DistVAE has it, else the generic one)."""
    from distvae.modules.adapters.vae import decoder_adapters
    from xfuser.core.distributed.parallel_state import get_vae_parallel_group

    adapter = getattr(decoder_adapters, "WanDecoderAdapter", None) or decoder_adapters.DecoderAdapter
    group = get_vae_parallel_group().device_group
    pipe.vae.decoder = adapter(pipe.vae.decoder, vae_group=group).to(pipe.vae.device)


def _model_index(load: Any) -> dict[str, Any]:
    folder = Path(load.source)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(
            snapshot_download(
                load.source,
                revision=load.revision,
                allow_patterns=["model_index.json"],
                local_files_only=load.local_files_only,
            )
        )
    return dict(json.loads((folder / "model_index.json").read_text()))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(
            "usage: python -m torch.distributed.run ... -m wanbatch.backends.local.xdit_launch JOB.json",
            file=sys.stderr,
        )
        return 2
    return run_worker(json.loads(Path(args[0]).read_text()))


if __name__ == "__main__":
    sys.exit(main())
