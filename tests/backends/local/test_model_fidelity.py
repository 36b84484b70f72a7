"""Fidelity to the upstream Wan models (issue 13, items 4-8): what would be wrong on a real GPU, checked on the
CPU with the model cards, tiny real pipelines and the frames actually handed to them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomllib
from PIL import Image

from wanbatch.backends.local import diffusers as diffusers_backend
from wanbatch.backends.local.diffusers import DiffusersBackend
from wanbatch.backends.local.models.registry import MODELS, resolve, spec_from_folder
from wanbatch.backends.local.models.spec import WAN_NEGATIVE_PROMPT
from wanbatch.backends.local.models.tiny import MARKER
from wanbatch.backends.local.pipelines import cover_box, fit_frames
from wanbatch.config.backends import DiffusersConfig
from wanbatch.errors import Issue

from conftest import CHECKOUT
from local_fixtures import job, scene, tiny_config, tiny_models_dir

__all__ = ["tiny_models_dir"]

REPO = CHECKOUT


@pytest.fixture(autouse=True)
def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub models are planned as on a machine with network (nothing is downloaded at plan time)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def picture(folder: Path, name: str, w: int, h: int, color: tuple[int, int, int] = (90, 140, 200)) -> Path:
    path = folder / name
    Image.new("RGB", (w, h), color).save(path)
    return path


def prepare(model: str, **fields: Any) -> tuple[dict[str, Any], list[Issue]]:
    b = DiffusersBackend(DiffusersConfig(device="cpu", model=model))
    issues: list[Issue] = []
    return b.prepare(scene(**fields), issues), issues


# -- 4. sizes in the model's own multiple -----------------------------------------------------------------
@pytest.mark.parametrize(("w", "h"), [(1920, 1080), (1080, 1920), (1024, 1024), (4000, 3000), (832, 480), (300, 100)])
def test_item4_ti2v_sizes_are_multiples_of_32_for_any_first_frame(tmp_path: Path, w: int, h: int) -> None:
    scale = 10 if w >= 1000 else 1  # the aspect ratio is what counts; small files plan the same
    params, issues = prepare("wan2.2-ti2v-5b", image=picture(tmp_path, "f.png", w // scale, h // scale))
    assert not issues
    assert params["width"] % 32 == 0 and params["height"] % 32 == 0
    assert params["width"] * params["height"] <= 1280 * 704


def test_item4_ti2v_plans_1920x1080_as_1248x704_and_says_so(tmp_path: Path) -> None:
    spec = resolve("wan2.2-ti2v-5b")
    assert spec.size_multiple == 32 and spec.size_from_image("720P", 1920, 1080) == (1248, 704)
    b = DiffusersBackend(DiffusersConfig(device="cpu", model="wan2.2-ti2v-5b"))
    sc = scene(image=picture(tmp_path, "f.png", 192, 108))
    params = b.prepare(sc, [])
    assert (params["width"], params["height"]) == (1248, 704)
    assert any("size 1248x704" in n and "multiples of 32" in n for n in b.notes(sc, params))
    # An explicit size must divide by 32 as well
    _, issues = prepare("wan2.2-ti2v-5b", width=1264, height=704, image=picture(tmp_path, "g.png", 16, 9))
    assert [i.field for i in issues] == ["width x height"] and "divisible by 32" in issues[0].allowed
    # Every other card keeps 16
    assert {n: s.size_multiple for n, s in MODELS.items() if n != "wan2.2-ti2v-5b"} == {
        n: 16 for n in MODELS if n != "wan2.2-ti2v-5b"
    }


def build_tiny_ti2v(path: Path) -> Path:
    """A tiny Wan2.2 TI2V-5B-like checkpoint: diffusers' own test config for it (a VAE of spatial stride 16 with
    48 latent channels, a patch-2 transformer, `expand_timesteps`), random weights, no download."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

    tokenizer = ByT5Tokenizer()
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    )
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    )
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=48,
        out_channels=48,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        transformer=transformer,
        expand_timesteps=True,
    )
    pipe.save_pretrained(str(path))
    return path


def test_item4_a_ti2v_checkpoint_renders_exactly_the_planned_size(tmp_path: Path) -> None:
    folder = build_tiny_ti2v(tmp_path / "tiny-ti2v")
    spec = spec_from_folder(folder)
    assert spec.size_multiple == 32 and spec.tasks == {"t2v", "i2v"}
    # A 4:3 first frame in the 480P area: 704x544 in multiples of 32 (720x544 in multiples of 16, which
    # diffusers >= 0.37 would quietly render at 704x544, a clip of another size than planned; older ones fail)
    b = DiffusersBackend(DiffusersConfig(device="cpu", model=str(folder)))
    j = job(b, scene(image=picture(tmp_path, "f.png", 400, 300), num_frames=5, steps=1))
    assert (j.params["width"], j.params["height"]) == (704, 544)
    frames, _ = b.render_frames(j)
    assert frames.shape == (5, 544, 704, 3)


# -- 5. frames fitted as upstream intends -----------------------------------------------------------------
def red_green_red(w: int, h: int) -> Image.Image:
    """Red left and right quarters, green middle: anything red left after a centre crop was not cropped."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, :] = (230, 20, 20)
    a[:, w // 4 : 3 * w // 4] = (20, 230, 20)
    return Image.fromarray(a)


def test_item5_flf2v_last_frame_is_centre_cropped_to_the_first_frames_aspect() -> None:
    first = Image.new("RGB", (64, 64), (0, 0, 255))
    last = red_green_red(128, 64)  # 2:1; its middle half is the 1:1 centre
    got = fit_frames({"width": 32, "height": 32}, {"image": first, "last_image": last})
    out = np.asarray(got["last_image"]).astype(int)
    assert got["last_image"].size == (32, 32) and got["image"].size == (32, 32)
    assert (out[..., 1] > 200).all() and (out[..., 0] < 60).all()  # all green: no red side, no grey pad
    # The crop follows the first frame's aspect, even where the render size has another (upstream's intent)
    assert cover_box((128, 64), (64, 64)) == (32.0, 0.0, 96.0, 64.0)
    assert cover_box((64, 128), (200, 100)) == (0.0, 48.0, 64.0, 80.0)
    # Equal aspect ratios: the whole frame, only resized
    assert cover_box((1920, 1080), (1280, 720)) == (0.0, 0.0, 1920.0, 1080.0)


def record_pipeline_inputs(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """What the pipeline's image encoder (CLIP) and VAE preprocessing receive."""
    from diffusers import WanImageToVideoPipeline
    from diffusers.video_processor import VideoProcessor

    seen: dict[str, list[Any]] = {"clip": [], "vae": []}
    encode, preprocess = WanImageToVideoPipeline.encode_image, VideoProcessor.preprocess

    def encode_image(self: Any, image: Any, device: Any = None) -> Any:
        seen["clip"].append(image)
        return encode(self, image, device)

    def vae_preprocess(self: Any, image: Any, *a: Any, **k: Any) -> Any:
        seen["vae"].append(image)
        return preprocess(self, image, *a, **k)

    monkeypatch.setattr(WanImageToVideoPipeline, "encode_image", encode_image)
    monkeypatch.setattr(VideoProcessor, "preprocess", vae_preprocess)
    return seen


def test_item5_flf2v_frames_reach_the_pipeline_cropped_not_stretched(
    tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = record_pipeline_inputs(monkeypatch)
    first = picture(tmp_path, "first.png", 48, 48, (0, 0, 255))
    last = tmp_path / "last.png"
    red_green_red(96, 48).save(last)
    b = DiffusersBackend(tiny_config(tiny_models_dir, model="tiny-flf2v"))
    sc = scene(image=first, last_image=last, width=32, height=32)
    j = job(b, sc)
    assert j.params["frame_fit"] == "cover-crop-v1"
    assert any("last frame 96x48 centre-cropped" in n for n in b.notes(sc, j.params))
    b.render_frames(j)
    (clip_in,) = seen["clip"]
    first_in, last_in = clip_in
    assert first_in.size == last_in.size == (32, 32)
    assert (np.asarray(last_in)[..., 0] < 60).all()  # the red sides are gone: cropped, not squeezed in
    assert [im.size for im in seen["vae"]] == [(32, 32), (32, 32)]  # the VAE gets the very same frames
    assert seen["vae"][1] is last_in


def test_item5_i2v_first_frame_is_resized_before_the_call(
    tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = record_pipeline_inputs(monkeypatch)
    b = DiffusersBackend(tiny_config(tiny_models_dir, model="tiny-i2v"))
    j = job(b, scene(image=picture(tmp_path, "f.png", 300, 180)))  # planned 80x48 (the tiny 480P area)
    b.render_frames(j)
    (clip_in,) = seen["clip"]
    assert clip_in.size == (j.params["width"], j.params["height"]) == (80, 48)
    assert seen["vae"] == [clip_in]  # CLIP sees the frame the model renders from


def test_item5_keys_move_only_where_the_pixels_do(tmp_path: Path) -> None:
    # Wan2.2 I2V has no image encoder: its frame reaches the VAE exactly as the pipeline would have resized it
    # itself, so its cached renders stay valid; Wan2.1 I2V's CLIP sees another frame now, so its key moves.
    image = picture(tmp_path, "f.png", 300, 180)
    wan22, _ = prepare("wan2.2-i2v-a14b", image=image)
    wan21, _ = prepare("wan2.1-i2v-14b-480p", image=image)
    flf, _ = prepare("wan2.1-flf2v-14b-720p", image=image, last_image=image)
    assert "frame_fit" not in wan22 and wan21["frame_fit"] == flf["frame_fit"] == "cover-crop-v1"


# -- 6. negative prompts -----------------------------------------------------------------------------------
def test_item6_wan21_i2v_and_flf2v_negative_prompts(tiny_models_dir: Path, tmp_path: Path) -> None:
    for name in ("wan2.1-i2v-14b-480p", "wan2.1-i2v-14b-720p"):  # one upstream config serves both
        assert resolve(name).negative_prompt == "镜头晃动，" + WAN_NEGATIVE_PROMPT
    assert resolve("wan2.1-flf2v-14b-720p").negative_prompt == "镜头切换，镜头晃动，" + WAN_NEGATIVE_PROMPT
    for name in ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b"):
        assert resolve(name).negative_prompt == WAN_NEGATIVE_PROMPT
    # A scene that sets none renders with the card's; one that sets its own keeps it
    image = picture(tmp_path, "f.png", 128, 72)
    params, _ = prepare("wan2.1-flf2v-14b-720p", image=image, last_image=image)
    assert params["negative_prompt"].startswith("镜头切换，镜头晃动，色调艳丽")
    params, _ = prepare("wan2.1-flf2v-14b-720p", image=image, last_image=image, negative_prompt="blur")
    assert params["negative_prompt"] == "blur"
    # A local Wan2.1 checkpoint folder is recognised by its transformer config (here the tiny FLF2V/I2V ones
    # without the marker that says they are wanbatch's)
    for tiny, prefix in (("tiny-flf2v", "镜头切换，镜头晃动，"), ("tiny-i2v", "镜头晃动，")):
        copy = tmp_path / tiny
        shutil.copytree(tiny_models_dir / f"{tiny}-v1", copy)
        (copy / MARKER).unlink()
        assert spec_from_folder(copy).negative_prompt == prefix + WAN_NEGATIVE_PROMPT


# -- 7. sizes, shifts and every default of the cards ------------------------------------------------------------
# (steps, guidance, guidance_2, {tier: shift}, fps, frames): Wan2.1 generate.py L71-81 (shift 5.0; 3.0 for i2v
# at 832*480; 16 for flf2v at every size; 40 steps for i2v else 50), README (1.3B: shift 8, guidance 6),
# Wan2.2 configs (t2v-A14B, i2v-A14B, ti2v-5B).
UPSTREAM = {
    "wan2.1-t2v-1.3b": (50, 6.0, None, {"480P": 8.0}, 16, 81),
    "wan2.1-t2v-14b": (50, 5.0, None, {"480P": 5.0, "720P": 5.0}, 16, 81),
    "wan2.1-i2v-14b-480p": (40, 5.0, None, {"480P": 3.0}, 16, 81),
    "wan2.1-i2v-14b-720p": (40, 5.0, None, {"480P": 3.0, "720P": 5.0}, 16, 81),
    "wan2.1-flf2v-14b-720p": (50, 5.0, None, {"720P": 16.0}, 16, 81),
    "wan2.2-t2v-a14b": (40, 4.0, 3.0, {"480P": 12.0, "720P": 12.0}, 16, 81),
    "wan2.2-i2v-a14b": (40, 3.5, 3.5, {"480P": 5.0, "720P": 5.0}, 16, 81),
    "wan2.2-ti2v-5b": (50, 5.0, None, {"720P": 5.0}, 24, 121),
}


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_item7_every_card_default_is_upstreams(name: str) -> None:
    s = resolve(name)
    assert (s.steps, s.guidance_scale, s.guidance_scale_2, dict(s.flow_shift), s.fps, s.frames) == UPSTREAM[name]


def test_item7_explicit_480p_on_the_720p_i2v_model_uses_shift_3(tmp_path: Path) -> None:
    image = picture(tmp_path, "f.png", 832, 480)
    params, issues = prepare("wan2.1-i2v-14b-720p", image=image, width=832, height=480)
    assert not issues and params["flow_shift"] == 3.0
    params, _ = prepare("wan2.1-i2v-14b-720p", image=image, width=1280, height=720)
    assert params["flow_shift"] == 5.0
    params, _ = prepare("wan2.1-i2v-14b-720p", image=image)  # the 720P tier from a 832x480 frame
    assert (params["width"], params["height"], params["flow_shift"]) == (1264, 720, 5.0)
    # FLF2V is 16 at every size upstream ("flf2v" in the task), not 3.0
    params, _ = prepare("wan2.1-flf2v-14b-720p", image=image, last_image=image, width=832, height=480)
    assert params["flow_shift"] == 16.0
    # The 720P checkpoints are 720P-only on their cards: `resolution: 480P` stays refused there
    for model, extra in (("wan2.1-i2v-14b-720p", {}), ("wan2.1-flf2v-14b-720p", {"last_image": image})):
        _, issues = prepare(model, image=image, resolution="480P", **extra)
        assert [i.field for i in issues] == ["resolution"] and "one of 720P" in issues[0].allowed


# -- 8. diffusers versions -------------------------------------------------------------------------------------
def test_item8_group_offload_needs_diffusers_036(monkeypatch: pytest.MonkeyPatch) -> None:
    floor = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["local"]
    assert "diffusers>=0.36" in floor
    b = DiffusersBackend(DiffusersConfig(device="cpu", offload="group"))
    monkeypatch.setattr(diffusers_backend, "diffusers_version", lambda: (0, 35, 2))
    issues: list[Issue] = []
    b.check_ready(issues)
    (issue,) = [i for i in issues if "0.36" in i.allowed]
    assert (issue.field, issue.value) == ("backend.offload", "group") and "diffusers 0.35.2" in issue.allowed
    monkeypatch.setattr(diffusers_backend, "diffusers_version", lambda: (0, 36, 0))
    issues = []
    b.check_ready(issues)
    assert not [i for i in issues if "0.36" in i.allowed]
    # and the installed one has it
    import diffusers

    assert hasattr(diffusers.DiffusionPipeline, "enable_group_offload")
    assert diffusers_backend.diffusers_version() >= (0, 36)
