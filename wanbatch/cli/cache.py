"""`wanbatch cache list | why | prune | doctor`: look into the render cache, and look after it.

wanbatch cache list [--dir D] [--project NAME] [--json]
wanbatch cache ambiguous [--dir D] [--json]             submits that may have been accepted: check, then resubmit
wanbatch cache why recipe=demo [HYDRA OVERRIDES...]     which field changed (old → new), per scene that misses
wanbatch cache why --config-dir DIR --config-name NAME [OVERRIDES...]
wanbatch cache prune [--dir D] (--older-than 30d | --all) [--dry-run] [--yes]   keeps what live runs use
wanbatch cache doctor [--dir D] [--rebuild] [--json]        check every blob; rebuild a missing or
                                                            damaged index from the blobs' sidecars

A cached render may have been paid for: `prune` lists what would go and asks first (`--yes` skips the question;
without a terminal and without `--yes` it deletes nothing). `list`, `why` and `ambiguous` only read: a folder
that holds no cache stays as it is.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from wanbatch.cache.store import Cache, is_cache
from wanbatch.config.load import PROJECT_FILE, default_cache_dir, load_config, recipe_dir

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _age(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(
            f"`--older-than` = {text!r} is not allowed; a number with a unit s|m|h|d|w, e.g. 30d"
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="wanbatch cache", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_list = sub.add_parser("list", help="list cached renders")
    p_list.add_argument("--dir", type=Path, default=None)
    p_list.add_argument("--json", action="store_true")
    p_list.add_argument("--project", help="only the renders of this project (its `project.name`)")
    p_amb = sub.add_parser(
        "ambiguous",
        help="remote submits that may have been accepted (their answer was lost): check them with the provider, "
        "then rerun with resubmit_ambiguous=[ids] for those it does not have",
    )
    p_amb.add_argument("--dir", type=Path, default=None)
    p_amb.add_argument("--json", action="store_true")
    p_why = sub.add_parser("why", help="say why each scene of a project misses the cache")
    p_why.add_argument("--config-dir", type=Path)
    p_why.add_argument("--config-name")
    p_why.add_argument("overrides", nargs="*")
    p_prune = sub.add_parser("prune", help="remove old entries and unreferenced blobs")
    p_prune.add_argument("--dir", type=Path, default=None)
    group = p_prune.add_mutually_exclusive_group(required=True)
    group.add_argument("--older-than", type=_age)
    group.add_argument("--all", action="store_true")
    p_prune.add_argument("--dry-run", action="store_true", help="list what would go and the bytes; delete nothing")
    p_prune.add_argument("--yes", "-y", action="store_true", help="do not ask (scripts)")
    p_doctor = sub.add_parser("doctor", help="check every blob, rebuild a missing or damaged index")
    p_doctor.add_argument("--dir", type=Path, default=None)
    p_doctor.add_argument("--rebuild", action="store_true", help="rebuild the index from the sidecars anyway")
    p_doctor.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if args.cmd == "why":
        return _why(args)
    if args.cmd == "doctor":
        return _doctor(args)
    directory = Path(args.dir or default_cache_dir()).expanduser()
    if not is_cache(directory):
        # A look must not create a cache where a typo points; an explicit folder that is none is a mistake.
        if args.dir is not None:
            print(
                f"error: `--dir` = {str(args.dir)!r} is not allowed; a folder holding a wanbatch cache", file=sys.stderr
            )
            return 2
        print(f"no cache at {directory} yet: nothing rendered, nothing to {args.cmd}")
        return 0
    cache = Cache(directory, readonly=True if args.cmd == "list" else None)
    for note in cache.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.cmd == "ambiguous":
        return _ambiguous(cache, as_json=args.json)
    if args.cmd == "list":
        return _list(cache, args)
    if cache.readonly:
        print(f"error: `--dir` = {str(cache.dir)!r} is not allowed; it is read-only here", file=sys.stderr)
        return 2
    return _prune(cache, args)


def _list(cache: Cache, args: argparse.Namespace) -> int:
    entries = sorted(cache.entries(), key=lambda e: e["created"])
    if args.project is not None:
        entries = [e for e in entries if e.get("project") == args.project]
    if args.json:
        fields = ("key", "project", "scene_id", "backend", "model", "seed", "size", "created", "request_id")
        print(json.dumps([{k: e.get(k) for k in fields} for e in entries], indent=2))
        return 0
    print(f"{'KEY':<16}  {'CREATED':<16}  {'PROJECT':<14} {'SCENE':<20} {'BACKEND':<18} {'SEED':>10}  {'SIZE':>9}")
    for e in entries:
        print(
            f"{e['key'][:16]:<16}  {_when(e['created']):<16}  {e.get('project') or '-':<14} "
            f"{e.get('scene_id') or '(film)':<20} {e.get('backend') or '?':<18} {e.get('seed')!s:>10}  "
            f"{_mb(e['size']):>9}"
        )
    which = f" of project {args.project}" if args.project is not None else ""
    total = sum(e["size"] for e in entries)
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}{which}, {_mb(total)}, in {cache.dir}")
    return 0


def _prune(cache: Cache, args: argparse.Namespace) -> int:
    """What would go is listed first (entries old enough; one a live run uses is kept even so); deleting needs
    a yes, typed at a terminal or given as --yes."""
    now = time.time()
    gone = [
        e
        for e in cache.entries()
        if args.all or (args.older_than is not None and now - float(e.get("created", 0)) > args.older_than)
    ]
    for e in gone:
        print(
            f"  {e['key'][:16]}  {_when(e['created'])}  {e.get('scene_id') or '(film)':<20} {e.get('backend') or '?'}"
        )
    summary = f"{len(gone)} entries ({_mb(sum(e['size'] for e in gone))})"
    if args.dry_run:
        print(f"would prune {summary} in {cache.dir} (dry run: nothing deleted)")
        return 0
    if gone and not args.yes:
        if not sys.stdin.isatty():
            print(
                f"would prune {summary}; nothing deleted: no terminal to ask on, pass --yes to delete", file=sys.stderr
            )
            return 1
        answer = input(f"delete {summary} from {cache.dir}? cached renders may have been paid for [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    stats = cache.prune(older_than_s=args.older_than, everything=args.all)
    kept = f"; kept {stats['in_use']} in use by live runs" if stats["in_use"] else ""
    back = f"; put {stats['restored']} lost entries back into the index" if stats["restored"] else ""
    print(
        f"pruned {stats['entries']} entries and {stats['blobs']} blobs ({_mb(stats['bytes'])}) in "
        f"{cache.dir}{kept}{back}"
    )
    cache.close()
    return 0


def _when(created: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(created))


def _mb(size: float) -> str:
    return f"{size / 1e6:.2f} MB"


def _doctor(args: argparse.Namespace) -> int:
    from wanbatch.cache.doctor import doctor, summary

    folder = (args.dir or default_cache_dir()).expanduser()
    if not folder.is_dir():
        print(f"error: `--dir` = {str(folder)!r} is not allowed; no cache there", file=sys.stderr)
        return 2
    found = doctor(folder, rebuild=args.rebuild)
    if args.json:
        print(json.dumps(summary(found, folder), indent=2))
        return 0
    for note in found.notes:
        print(note)
    print(
        f"checked {found.entries} entries ({found.verified_bytes / 1e6:.1f} MB hashed) in {found.seconds:.1f} s: "
        f"{len(found.dropped)} dropped, {found.restored} restored; {folder} is "
        + ("healthy" if not found.dropped else "usable (a run renders the dropped scenes again)")
    )
    return 0


def _ambiguous(cache: Any, *, as_json: bool) -> int:
    held = [
        {
            "key": key,
            **{k: e.get(k) for k in ("scene", "backend", "model", "submitted_at_utc", "reason", "payload_summary")},
        }
        for key, e in cache.journal.items()
        if not e.get("request_id") and e.get("state") in ("submitting", "ambiguous")
    ]
    if as_json:
        print(json.dumps(held, indent=2, ensure_ascii=False))
        return 0
    for h in held:
        print(
            f"{h['scene']}  {h['backend']}  {h['model']}  sent {h['submitted_at_utc']}  "
            f"({h['reason'] or 'the process ended before its answer came'})\n"
            f"    sent: {json.dumps(h['payload_summary'], ensure_ascii=False, sort_keys=True)}"
        )
    scenes = ",".join(sorted({str(h["scene"]) for h in held}))
    hint = f"; for those the provider does not have: resubmit_ambiguous=[{scenes}]" if held else ""
    print(f"{len(held)} ambiguous submits in {cache.dir}{hint}")
    return 0


def _why(args: argparse.Namespace) -> int:
    from wanbatch.backends import build_backends
    from wanbatch.config.load import backend_configs
    from wanbatch.core.plan import make_plan
    from wanbatch.core.project import load_project
    from wanbatch.errors import ConfigError

    overrides = list(args.overrides)
    recipe = next((o.split("=", 1)[1] for o in overrides if o.startswith("recipe=")), None)
    if args.config_dir and args.config_name:
        project_file = args.config_dir / f"{args.config_name}.yaml"
    elif recipe and (folder := recipe_dir(recipe)):
        project_file = folder / PROJECT_FILE
    else:
        print("error: pass recipe=NAME or --config-dir DIR --config-name NAME", file=sys.stderr)
        return 2
    try:
        cfg = load_config(project_file, overrides)
        project = load_project(cfg, project_file.parent, backend_configs(cfg))
        plan = make_plan(project, build_backends(project.backend_configs), encode=cfg.encode)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache_dir = Path(cfg.cache.dir).expanduser()
    if not is_cache(cache_dir):  # nothing rendered yet: every scene is new, and no cache is made to say so
        for job in plan.jobs:
            print(f"{job.id}: new: no cache at {cache_dir} yet")
        return 0
    cache = Cache(cache_dir, readonly=True)  # it only reads
    for job in plan.jobs:
        state = "cached" if cache.peek(job.key) else cache.explain_miss(job.scene.id, job.material)
        print(f"{job.id}: {state}")
    return 0
