"""``cti recordings purge [--dry-run]``: deletes the call recordings older than ``recording.retention_days``
under the configured recording directory, and marks their interactions ``recording_purged_at`` (the path
stays, for audit).

Asterisk writes the files on the PBX host: run this there (cron, as the user that owns the spool) or on a
host where that directory is mounted (``--root`` says where, when the mount point differs; the interactions
keep the PBX's paths). Only regular files (no symlinks, nothing outside the directory) with the template's
extension are deleted; the directories the purge empties go too (never the root). A file's age is its
modification time (when Asterisk last wrote it: the end of the call).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from centre.cli_common import load_or_exit


@dataclass(frozen=True, slots=True)
class Expired:
    path: Path  # on this host
    recorded_as: str  # as the PBX wrote it (what the interaction holds)
    size: int


def expired_files(root: Path, pbx_dir: str, extensions: tuple[str, ...], cutoff: float) -> list[Expired]:
    """The recordings under ``root`` last written before ``cutoff`` (epoch seconds), oldest first."""
    found: list[tuple[float, Expired]] = []
    for folder, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            if not name.endswith(extensions):
                continue
            path = Path(folder) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            if not path.is_file() or path.is_symlink() or st.st_mtime >= cutoff:
                continue
            relative = path.relative_to(root).as_posix()
            found.append((st.st_mtime, Expired(path, f"{pbx_dir.rstrip('/')}/{relative}", st.st_size)))
    return [e for _, e in sorted(found, key=lambda item: (item[0], str(item[1].path)))]


def _extensions(template: str) -> tuple[str, ...]:
    ext = "." + template.rsplit(".", 1)[1]
    return (ext, ".WAV") if ext == ".wav49" else (ext,)


def _remove_empty_dirs(root: Path) -> None:
    for folder, dirs, files in os.walk(root, topdown=False):
        here = Path(folder)
        if here != root and not dirs and not files:
            try:
                here.rmdir()
            except OSError:
                pass


def _mark(url: str, paths: list[str], when: datetime) -> int:
    from centre.database import upgrade
    from cti.db import make_engine
    from screenpop.store import CustomerStore

    upgrade(url)
    engine = make_engine(url)
    try:
        return CustomerStore(engine).mark_recordings_purged(paths, when)
    finally:
        engine.dispose()


def _cmd_purge(args: argparse.Namespace) -> int:
    cfg = load_or_exit(args.config, status=2)
    section = cfg.recording
    root = Path(args.root or section.directory)
    if not root.is_dir():
        print(f"cti recordings purge: the recording directory {str(root)!r} is not on this host. Asterisk writes "
              "the recordings on the PBX host: run the purge there, or where that directory is mounted "
              "(--root DIR)", file=sys.stderr)
        return 2
    now = time.time()
    cutoff = now - section.retention_days * 86400.0
    expired = expired_files(root, section.directory, _extensions(section.path), cutoff)
    total = sum(e.size for e in expired)
    verb = "would delete" if args.dry_run else "deleting"
    for e in expired:
        print(f"{verb} {e.path}")
    if args.dry_run:
        print(f"{len(expired)} recordings ({total} bytes) older than {section.retention_days} days under {root}; "
              "nothing deleted (--dry-run)")
        return 0
    deleted: list[str] = []
    failed = 0
    for e in expired:
        try:
            e.path.unlink()
            deleted.append(e.recorded_as)
        except OSError as exc:
            failed += 1
            print(f"cannot delete {e.path}: {exc.strerror}", file=sys.stderr)
    _remove_empty_dirs(root)
    marked: Any = "not"
    status = 1 if failed else 0
    if deleted:
        url = args.db or cfg.database.url
        try:
            marked = _mark(url, deleted, datetime.fromtimestamp(now, UTC))
        except Exception as exc:
            print(f"the files are deleted but their interactions could not be marked purged: "
                  f"{type(exc).__name__}", file=sys.stderr)
            status = 1
    else:
        marked = 0
    print(f"{len(deleted)} recordings ({total} bytes) older than {section.retention_days} days deleted under "
          f"{root}; {marked} interactions marked purged" + (f"; {failed} could not be deleted" if failed else ""))
    return status


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("recordings", help="call recordings: retention purge")
    sub = p.add_subparsers(dest="recordings_command")
    purge = sub.add_parser("purge", help="delete recordings older than recording.retention_days")
    purge.add_argument("--config", required=True, metavar="CONFIG",
                       help="configuration file (recording.path, recording.retention_days, database.url)")
    purge.add_argument("--db", metavar="URL", help="SQLAlchemy database URL (overrides the config's)")
    purge.add_argument("--root", metavar="DIR",
                       help="where the recording directory is on this host (default: the configured one)")
    purge.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    purge.set_defaults(func=_cmd_purge)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
