"""`xdit`: one Wan render split over several GPUs with xfuser sequence parallelism (Ulysses and ring).

Scenes are validated exactly as for the `diffusers` backend, plus the parallel degrees, up front:
`ulysses_degree` x `ring_degree` must equal the GPU count, and the Ulysses
degree must divide the model's attention heads. Each render runs `wanbatch.backends.local.xdit_launch` under
torchrun on all GPUs; rank 0 encodes the clip. One render at a time (it holds every GPU), and each
loads its pipeline afresh: the torchrun processes end with the render.

Example (4 GPUs, 40-head 14B model)::

    backend: {name: xdit, model: wan2.1-t2v-14b, gpus: 4, ulysses_degree: 4, ring_degree: 1}
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from wanbatch.backends.local.diffusers import DiffusersBackend, _find_spec
from wanbatch.backends.local.models.registry import MODELS
from wanbatch.backends.local.models.spec import ModelSpec
from wanbatch.backends.local.xdit_launch import Degrees, LaunchPlan, launch_plan, plan_degrees, write_job
from wanbatch.config.backends import DiffusersConfig, XditConfig
from wanbatch.config.checks import flag, number
from wanbatch.core.backend import BackendKind, RenderContext, RenderResult
from wanbatch.errors import Cancelled, Issue, MissingExtraError, RenderError

if TYPE_CHECKING:
    import numpy as np

    from wanbatch.core.job import Job
    from wanbatch.core.scene import Scene


@dataclass(frozen=True)
class Parallel:
    """The xdit options (XditConfig), checked: `auto` degrees become None (plan_degrees picks them)."""

    gpus: int | str  # "auto" = every visible CUDA device
    ulysses_degree: int | None  # None: the largest the heads allow
    ring_degree: int | None  # None: the GPUs left over
    cfg_parallel: bool | str  # "auto": where xDiT's runner has it (I2V), guidance is on and GPUs even
    parallel_vae: bool  # split the VAE decode over the GPUs (DistVAE)
    timeout_s: float | None

    @classmethod
    def check(cls, config: XditConfig, issues: list[Issue]) -> Parallel:
        """Append an Issue for each bad option; a bad one is taken at its schema default, so planning goes on."""
        defaults = type(config)()
        gpus = config.gpus
        if gpus != "auto" and not number(
            issues, "backend.gpus", gpus, minimum=1, integer=True, allowed="auto, or the number of GPUs one render uses"
        ):
            gpus = defaults.gpus
        degrees = []
        for key in ("ulysses_degree", "ring_degree"):
            value = getattr(config, key)
            if value != "auto" and not number(
                issues,
                f"backend.{key}",
                value,
                minimum=1,
                integer=True,
                nullable=True,
                allowed="a positive integer, or auto",
            ):
                value = getattr(defaults, key)
            degrees.append(None if value == "auto" else value)
        cfg = config.cfg_parallel
        if cfg != "auto" and not flag(issues, "backend.cfg_parallel", cfg, allowed="auto, true or false"):
            cfg = defaults.cfg_parallel
        vae = config.parallel_vae
        if not flag(issues, "backend.parallel_vae", vae):
            vae = defaults.parallel_vae
        timeout = config.timeout_s
        if not number(
            issues, "backend.timeout_s", timeout, above=0, nullable=True, allowed="a number of seconds > 0, or null"
        ):
            timeout = defaults.timeout_s
        return cls(gpus, degrees[0], degrees[1], cfg, vae, timeout)


# The checkpoints xDiT registers Wan runners for (the others render with `diffusers`)
XDIT_MODELS = tuple(name for name, spec in MODELS.items() if spec.xdit_runner)


class XditBackend(DiffusersBackend):
    name: ClassVar[str] = "xdit"
    kind: ClassVar[BackendKind] = BackendKind.LOCAL
    extra: ClassVar[str] = "xdit"
    config_type: ClassVar[type[DiffusersConfig]] = XditConfig
    config: XditConfig

    def __init__(self, config: XditConfig, **kw: Any):
        super().__init__(config, **kw)
        self.xdit = Parallel.check(self.config, self._config_issues)
        self._reported: set[Issue] = set()

    # -- plan time ---------------------------------------------------------------------------------
    def require_extra(self) -> None:
        super().require_extra()
        if _find_spec("xfuser") is None:  # find, never import: xfuser's import needs CUDA
            raise MissingExtraError("the `xdit` backend (xfuser not installed)", "xdit")

    def check_ready(self, issues: list[Issue]) -> None:
        self.require_extra()
        issues.extend(self._config_issues)
        visible = self.visible_gpus()
        if visible == 0:
            issues.append(
                Issue(
                    None,
                    "backend.name",
                    "xdit",
                    "a backend this machine can run: `xdit` needs CUDA "
                    "GPUs and none is visible; use `backend=diffusers` here",
                )
            )
        elif self.gpus() > visible:
            issues.append(Issue(None, "backend.gpus", self.gpus(), f"at most the {visible} visible GPUs"))
        if self.options.offload != "none":
            issues.append(
                Issue(
                    None,
                    "backend.offload",
                    self.options.offload,
                    "`none`: xdit splits the sequence over GPUs, each holds the whole model",
                )
            )
        if self.xdit.parallel_vae and _find_spec("distvae") is None:
            issues.append(
                Issue(
                    None,
                    "backend.parallel_vae",
                    True,
                    "false, or install DistVAE (https://github.com/xdit-project/DistVAE), which xDiT splits the "
                    "VAE decode with",
                )
            )

    def prepare(self, scene: Scene, issues: list[Issue], *, chained: bool = False) -> dict[str, Any]:
        params = super().prepare(scene, issues, chained=chained)
        if not params:
            return params
        got = self._resolve(scene)
        if isinstance(got, str):
            return {}
        spec = got.spec
        if spec.kind == "hub" and spec.xdit_runner is None:
            issues.append(
                Issue(
                    scene.id,
                    "model",
                    got.ref,
                    f"a model xDiT has a Wan runner for ({', '.join(XDIT_MODELS)}); `{spec.name}` has none, so it "
                    "renders on one GPU: use `backend: diffusers` for this scene",
                )
            )
            return {}
        cfg = self._cfg_degree(spec, params, issues)
        deg, problems = self.degrees(spec.heads, cfg)
        for option, allowed in problems:
            value = self.gpus() if option == "gpus" else getattr(self.xdit, option, None)
            self._report(issues, Issue(None, f"backend.{option}", value, allowed))
        if deg is None:
            return {}
        # the split changes the attention kernels' arithmetic, so it is part of what made the pixels (cfg and
        # the VAE split only when on, so renders planned before they existed keep their keys)
        params["parallel"] = {"ulysses": deg.ulysses, "ring": deg.ring}
        if deg.cfg > 1:
            params["parallel"]["cfg"] = deg.cfg
        if self.xdit.parallel_vae:
            params["parallel"]["vae"] = True
        return params

    def _cfg_degree(self, spec: ModelSpec, params: Mapping[str, Any], issues: list[Issue]) -> int:
        """2 where CFG parallel runs (xDiT's I2V pipeline, guidance on, an even GPU count), else 1. Asked for
        where it cannot run, it is a plan-time issue (reported once); `auto` just leaves it off."""
        option = self.xdit.cfg_parallel
        if option is False:
            return 1
        guided = params["guidance_scale"] > 1 and params.get("guidance_scale_2", 2.0) > 1
        if params["task"] != "i2v" or not spec.xdit_cfg_parallel:
            if option is True:
                runners = ", ".join(n for n, s in MODELS.items() if s.xdit_cfg_parallel)
                allowed = (
                    f"false or auto for `{spec.name}` {params['task']}: xDiT splits classifier-free guidance only "
                    f"in its image-to-video pipeline ({runners})"
                )
                self._report(issues, Issue(None, "backend.cfg_parallel", True, allowed))
            return 1
        if not guided:
            return 1  # no unconditional pass to run beside the conditional one
        if option == "auto" and (self.gpus() < 2 or self.gpus() % 2):
            return 1
        return 2

    def _report(self, issues: list[Issue], issue: Issue) -> None:
        if issue not in self._reported:  # one option, one message: not once per scene
            self._reported.add(issue)
            issues.append(issue)

    def notes(self, scene: Scene, params: Mapping[str, Any]) -> list[str]:
        out = super().notes(scene, params)
        par = params.get("parallel") if params else None
        if par:
            deg = Degrees(par["ulysses"], par["ring"], par.get("cfg", 1))
            vae = "split over the GPUs (DistVAE)" if par.get("vae") else "on each GPU whole"
            out.append(f"xDiT on {deg.describe()}; VAE decode {vae}")
            got = self._resolve(scene)
            if not isinstance(got, str) and got.spec.xdit_runner is None:
                out.append(
                    f"`{got.spec.name}` is not a model xDiT has a Wan runner for: wanbatch's own wrapping, "
                    "untested by xDiT"
                )
        return out

    def degrees(self, heads: int, cfg: int = 1) -> tuple[Degrees | None, list[tuple[str, str]]]:
        return plan_degrees(self.gpus(), heads, self.xdit.ulysses_degree, self.xdit.ring_degree, cfg)

    def visible_gpus(self) -> int:
        if _find_spec("torch") is None:
            return 0
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def gpus(self) -> int:
        g = self.xdit.gpus
        return g if isinstance(g, int) else self.visible_gpus()

    def devices(self) -> list[str]:
        return [f"cuda:{i}" for i in range(max(1, self.gpus()))]

    def device_type(self) -> str:
        return "cuda"

    @property
    def max_in_flight(self) -> int:
        return 1  # one render holds every GPU

    # -- run time ----------------------------------------------------------------------------------
    def launch(self, job: Job, ctx: RenderContext, *, frames_out: Path | None = None) -> tuple[LaunchPlan, Path]:
        """Write the job file into the scratch folder; return the launch plan and where the clip will be."""
        par = job.params["parallel"]
        deg = Degrees(par["ulysses"], par["ring"], par.get("cfg", 1))
        audio = job.inputs.get("audio")
        out = ctx.workdir / "clip.mp4"
        job_file = write_job(
            ctx.workdir / "xdit-job.json",
            load=self.load_spec(job),
            params=job.params,
            images=self._image_paths(job),
            audio=audio.path if audio is not None else None,
            out=out,
            encode=ctx.encode.identity(),
            degrees=deg,
            frames_out=frames_out,
            parallel_vae=bool(par.get("vae")),
        )
        visible = None
        if isinstance(self.options.device, (list, tuple)):
            visible = [int(str(d).partition(":")[2] or 0) for d in self.options.device]
        return launch_plan(job_file, deg.world, visible_devices=visible), out

    def render(self, job: Job, ctx: RenderContext) -> RenderResult:
        self.require_extra()
        plan, out = self.launch(job, ctx)
        t0 = time.perf_counter()
        self._run(plan, ctx, job)
        if not out.is_file():
            tail = _tail(ctx.workdir / "xdit.log")
            raise RenderError(f"xdit render of `{job.id}` wrote no {out.name}. Last lines of its log:\n{tail}")
        par = job.params["parallel"]
        return RenderResult(
            video=out,
            model=job.model,
            info={
                "render_s": round(time.perf_counter() - t0, 3),
                "gpus": plan.nproc,
                "ulysses_degree": par["ulysses"],
                "ring_degree": par["ring"],
                "cfg_degree": par.get("cfg", 1),
                "parallel_vae": bool(par.get("vae")),
            },
        )

    def render_frames(self, job: Job, ctx: RenderContext | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """The frames rank 0 encoded (saved beside the clip for this purpose)."""
        import numpy as np

        if ctx is None:
            raise RenderError("the xdit backend renders in a scratch folder: pass a RenderContext")
        frames_file = ctx.workdir / "frames.npy"
        plan, _out = self.launch(job, ctx, frames_out=frames_file)
        t0 = time.perf_counter()
        self._run(plan, ctx, job)
        return np.load(frames_file), {"render_s": round(time.perf_counter() - t0, 3), "gpus": plan.nproc}

    def _run(self, plan: LaunchPlan, ctx: RenderContext, job: Job) -> None:
        log_path = ctx.workdir / "xdit.log"
        ctx.status(f"rendering on {plan.nproc} GPUs")
        deadline = time.monotonic() + self.xdit.timeout_s if self.xdit.timeout_s else None
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                plan.argv, env={**os.environ, **plan.env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )  # its own process group: stopped as a whole
            try:
                while True:
                    try:
                        rc = proc.wait(timeout=0.5)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    if ctx.cancel.is_set():
                        _stop(proc)
                        raise Cancelled("cancelled while rendering on the GPUs")
                    if deadline is not None and time.monotonic() > deadline:
                        _stop(proc)
                        raise RenderError(
                            f"xdit render of `{job.id}` took longer than `backend.timeout_s` = {self.xdit.timeout_s} s"
                        )
            except BaseException:
                _stop(proc)
                raise
        if rc != 0:
            tail = _tail(log_path)
            if "out of memory" in tail.lower():
                raise RenderError(
                    f"out of GPU memory rendering `{job.id}` on {plan.nproc} GPUs. Fix: more GPUs "
                    "(`backend.gpus`), `backend.vae_tiling=true`, or a smaller `width`/`height` or "
                    f"fewer frames. Last lines:\n{tail}"
                )
            raise RenderError(f"xdit render of `{job.id}` failed (exit {rc}). Last lines of its log:\n{tail}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


__all__ = ["Parallel", "XditBackend"]
