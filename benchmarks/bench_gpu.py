"""GPU: the full-size Wan2.1 T2V 1.3B architecture, random weights, through wanbatch vs a direct diffusers call.

    python benchmarks/bench_gpu.py [--quick] [--smoke]

Needs a CUDA device; without one it prints "skipped: no CUDA device" and returns a skipped result.
No download is possible, so the checkpoint is built here: the transformer, VAE and UMT5-XXL text
encoder from the Wan2.1-T2V-1.3B configs with random weights (ByT5's byte tokenizer, which needs no
vocabulary file, stands in for the UMT5 tokenizer; the encoder keeps UMT5-XXL's 256384-token
embedding), saved with `save_pretrained` and loaded back by both sides. Setting: 832x480, 81 frames,
50 steps, guidance 5, bfloat16 transformer and text encoder, float32 VAE (wanbatch's CUDA defaults).

- direct: `WanPipeline.from_pretrained(folder)`, `.to("cuda")`, a 2-step warm-up, then the timed
  50-step call (`output_type="np"`, CPU generator).
- wanbatch: `run_project` on a two-scene project on the `diffusers` backend with `model: <folder>`: a
  2-step warm-up scene, then the timed 50-step scene; its seconds (render + encode + cache store, the
  pipeline already warm) come from manifest.json.

Target: wanbatch / direct <= 1.02. Peak GPU memory of each timed video is reported too. For reference,
Wan2.1's README lists 261.4 s on one RTX 4090 for this setting. `--quick` runs 10 steps instead of 50;
`--smoke` runs the same code on a tiny config on the CPU (to check the script, not to measure).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import figure, parse_args, print_result, result, skipped

TITLE = "6. GPU: Wan2.1 T2V 1.3B architecture, random weights"
TARGET = 1.02
README_4090_S = 261.4
PROMPT = "A red fox trotting through fresh snow in a pine forest at dawn, soft light, cinematic."

# Wan2.1-T2V-1.3B (transformer/config.json of the diffusers checkpoint) and UMT5-XXL.
FULL = {
    "transformer": dict(
        patch_size=(1, 2, 2),
        num_attention_heads=12,
        attention_head_dim=128,
        in_channels=16,
        out_channels=16,
        text_dim=4096,
        freq_dim=256,
        ffn_dim=8960,
        num_layers=30,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        image_dim=None,
        added_kv_proj_dim=None,
        rope_max_seq_len=1024,
    ),
    "vae": dict(
        base_dim=96,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        attn_scales=[],
        temperal_downsample=[False, True, True],
        dropout=0.0,
    ),
    "t5": dict(
        vocab_size=256384,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
        tie_word_embeddings=False,
    ),
    "video": dict(width=832, height=480, num_frames=81, steps=50),
}
SMOKE = {
    "transformer": dict(
        FULL["transformer"],
        num_attention_heads=2,
        attention_head_dim=12,
        text_dim=32,
        ffn_dim=32,
        num_layers=2,
        rope_max_seq_len=32,
    ),
    "vae": dict(FULL["vae"], base_dim=3, dim_mult=[1, 1, 1, 1], num_res_blocks=1),
    "t5": dict(
        FULL["t5"],
        vocab_size=384,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
    ),
    "video": dict(width=64, height=48, num_frames=9, steps=2),
}


def build_checkpoint(folder: Path, arch: dict[str, Any], device: str) -> float:
    """Random-weight Wan T2V pipeline of architecture `arch`, built on `device`, saved to `folder`."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

    t0 = time.perf_counter()
    low = torch.bfloat16 if device.startswith("cuda") else torch.float32
    previous = torch.get_default_dtype()
    torch.manual_seed(0)
    with torch.device(device):
        torch.set_default_dtype(low)  # built directly in the dtype it runs in: no 23 GB float32 detour
        try:
            text_encoder = UMT5EncoderModel(UMT5Config(**arch["t5"]))
            transformer = WanTransformer3DModel(**arch["transformer"])
        finally:
            torch.set_default_dtype(previous)
        vae = AutoencoderKLWan(**arch["vae"])
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
    )
    pipe = WanPipeline(
        tokenizer=ByT5Tokenizer(), text_encoder=text_encoder, vae=vae, scheduler=scheduler, transformer=transformer
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)
    del pipe, text_encoder, transformer, vae
    _free()
    return time.perf_counter() - t0


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_reset() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_gib() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def _project(tmp: Path, video: dict[str, Any], steps: int, folder: Path, device: str) -> tuple[Any, Path]:
    """The composed config of a warm-up scene + the timed scene on the diffusers backend."""
    from wanbatch.config.backends import DiffusersConfig
    from wanbatch.config.load import load_config

    root = tmp / "project"
    root.mkdir(parents=True)
    scenes = [
        {"id": "warmup", "prompt": PROMPT, "seed": 1, "steps": 2},
        {"id": "video", "prompt": PROMPT, "seed": 0, "steps": steps},
    ]
    import yaml

    defaults = {
        "width": video["width"],
        "height": video["height"],
        "num_frames": video["num_frames"],
        "guidance_scale": 5.0,
    }
    (root / "project.yaml").write_text(
        yaml.safe_dump(
            {
                "defaults": ["wanbatch", "_self_"],
                "project": {"name": "gpu-bench", "defaults": defaults},
                "scenes": scenes,
            },
            sort_keys=False,
        )
    )
    cfg = load_config(
        root / "project.yaml",
        [f"cache.dir={tmp / 'cache'}", "executor.progress=none", "stitch.enabled=false", "report=false"],
    )
    cfg.backend = DiffusersConfig(
        model=str(folder), device=device, dtype="bfloat16" if device.startswith("cuda") else "float32"
    )
    return cfg, root


def _job_params(tmp: Path, video: dict[str, Any], steps: int, folder: Path, device: str) -> dict[str, Any]:
    """The canonical params wanbatch plans for the timed scene (the direct call gets the same inputs)."""
    from wanbatch.backends import build_backends
    from wanbatch.config.load import backend_configs
    from wanbatch.core.plan import make_plan
    from wanbatch.core.project import load_project

    cfg, root = _project(tmp / "plan-only", video, steps, folder, device)
    project = load_project(cfg, root, backend_configs(cfg))
    plan = make_plan(project, build_backends(project.backend_configs))
    params = dict(plan.job("video").params)
    for b in plan.backends.values():
        b.close()
    return params


def run_wanbatch(tmp: Path, video: dict[str, Any], steps: int, folder: Path, device: str) -> dict[str, Any]:
    from wanbatch.runs.run import run_project

    cfg, root = _project(tmp, video, steps, folder, device)
    run_dir = tmp / "run"
    _peak_reset()
    t0 = time.perf_counter()
    code = run_project(cfg, run_dir, root, out=open(os.devnull, "w")).exit_code  # noqa: SIM115
    _sync()
    wall = time.perf_counter() - t0
    peak = _peak_gib()
    data = json.loads((run_dir / "manifest.json").read_text())
    scenes = {s["id"]: s for s in data["scenes"]}
    v = scenes["video"]
    if code != 0 or v["status"] != "rendered":
        raise RuntimeError(f"wanbatch run exited {code}: {v['status']} {v.get('error')}")
    return {
        "wall_s": wall,
        "video_s": v["seconds"],
        "info": v["info"],
        "params": v["params"],
        "load_s": scenes["warmup"]["info"].get("load_s"),
        "peak_gib": peak,
    }


def run_direct(folder: Path, video: dict[str, Any], steps: int, params: dict[str, Any], device: str) -> dict[str, Any]:
    """A plain diffusers script: load, warm up, time one call with the same inputs as wanbatch's job."""
    import torch
    from diffusers import WanPipeline

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    t0 = time.perf_counter()
    dtypes = {"default": dtype, "vae": torch.float32}
    try:  # diffusers >= 0.36 calls it `dtype`; older versions `torch_dtype`
        pipe = WanPipeline.from_pretrained(str(folder), dtype=dtypes)
    except TypeError:
        pipe = WanPipeline.from_pretrained(str(folder), torch_dtype=dtypes)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    _sync()
    load_s = time.perf_counter() - t0
    kw = dict(
        prompt=PROMPT,
        negative_prompt=params["negative_prompt"],
        height=video["height"],
        width=video["width"],
        num_frames=video["num_frames"],
        guidance_scale=5.0,
        max_sequence_length=params["max_sequence_length"],
        output_type="np",
    )
    pipe(**kw, num_inference_steps=2, generator=torch.Generator("cpu").manual_seed(1))
    _sync()
    _peak_reset()
    t0 = time.perf_counter()
    pipe(**kw, num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(0))
    _sync()
    video_s = time.perf_counter() - t0
    peak = _peak_gib()
    del pipe
    _free()
    return {"load_s": load_s, "video_s": video_s, "peak_gib": peak}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import argparse

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--smoke", action="store_true")
    known, rest = pre.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    args = parse_args(rest, __doc__.splitlines()[0])
    try:
        import torch
    except ImportError:
        return skipped("gpu", TITLE, "no CUDA device (torch is not installed: the `[local]` extra)")
    cuda = torch.cuda.is_available()
    if not cuda and not known.smoke:
        return skipped(
            "gpu",
            TITLE,
            "no CUDA device",
            notes=[
                "Not measured on this machine. Run `python benchmarks/bench_gpu.py` on a machine with "
                "a CUDA GPU (about 20 GB of GPU memory, 20 GB of disk for the random checkpoint); "
                f"Wan2.1's README lists {README_4090_S} s per video on one RTX 4090 for this "
                "setting."
            ],
        )
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    dlogging.disable_progress_bar()
    tlogging.disable_progress_bar()
    arch = SMOKE if known.smoke else FULL
    device = "cuda:0" if cuda and not known.smoke else "cpu"
    video = dict(arch["video"])
    steps = video["steps"] if known.smoke else (10 if args.quick else 50)
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu (smoke test)"
    with tempfile.TemporaryDirectory(prefix="wanbatch-bench-gpu-", dir=os.environ.get("BENCH_GPU_TMP")) as tmp_s:
        tmp = Path(tmp_s)
        folder = tmp / "wan21-t2v-1.3b-random"
        build_s = build_checkpoint(folder, arch, device)
        # Each side warms up (2 steps) before its timed video, so neither pays the CUDA start-up.
        direct = run_direct(folder, video, steps, _job_params(tmp, video, steps, folder, device), device)
        ours = run_wanbatch(tmp, video, steps, folder, device)
    ratio = ours["video_s"] / direct["video_s"]
    render_ratio = ours["info"].get("render_s", float("nan")) / direct["video_s"]
    what = f"{video['width']}x{video['height']}, {video['num_frames']} frames, {steps} steps"
    figures = [
        figure(f"direct diffusers call, {what}", f"{direct['video_s']:.1f} s/video"),
        figure("wanbatch (render + encode + cache store, warm)", f"{ours['video_s']:.1f} s/video"),
        figure("wanbatch / direct", f"{ratio:.3f}", f"<= {TARGET}", None if known.smoke else ratio <= TARGET),
        figure("wanbatch pipeline call alone / direct", f"{render_ratio:.3f}"),
        figure("peak GPU memory: direct / wanbatch", f"{direct['peak_gib']:.1f} / {ours['peak_gib']:.1f} GiB"),
        figure("pipeline load: direct / wanbatch", f"{direct['load_s']:.1f} / {ours['load_s'] or 0:.1f} s"),
        figure("GPU", gpu),
    ]
    notes = [
        f"Random weights built on the device in {build_s:.0f} s (saved and loaded back by both sides). "
        f"Wan2.1's README: {README_4090_S} s on one RTX 4090 for 832x480, 81 frames, 50 steps."
    ]
    if args.quick and not known.smoke:
        notes.append("--quick: 10 steps instead of 50.")
    if known.smoke:
        notes.append("--smoke: tiny config on the CPU; checks the script, measures nothing.")
    return result(
        "gpu", TITLE, figures, notes=notes, raw={"direct": direct, "wanbatch": ours, "gpu": gpu}, quick=args.quick
    )


if __name__ == "__main__":
    print_result(main())
