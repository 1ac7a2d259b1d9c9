"""`clean()`: inputs -> deduplicated, filtered, redacted JSONL parts + report + manifest.

Three stages, each resumable: scan every input file (parallel), merge the decisions (one
process), write every part (parallel). Progress lives in a work folder (`OUT/.clean/` for a
local output, a cache folder for a remote one); the settings are fixed when a clean starts and
a restart with the same ones continues where it stopped, producing the same output. The
manifest (`provenance.json`) is written last: an output folder without it is unfinished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from tessera.core.errors import DataError
from tessera.data.clean.config import CleanConfig
from tessera.data.clean.filters import filter_modules, resolve_filters
from tessera.data.clean.merge import fate_reasons, merge, merge_done
from tessera.data.clean.readers import InputFile, list_inputs
from tessera.data.clean.report import build_report, markdown, provenance_steps
from tessera.data.clean.scan import load_summary, scan_file
from tessera.data.clean.write import load_part_summary, write_file
from tessera.data.provenance import MANIFEST_NAME, new_manifest, read_manifest, source_entry
from tessera.data.provenance import write_manifest as save_manifest
from tessera.data.storage import Storage, is_remote, write_atomic

WORK_NAME = ".clean"
WORK_VERSION = 1
OUR_FILES = ("part-", "report.json", "report.md", MANIFEST_NAME)


def work_folder(out: Storage) -> str:
    if not out.remote:
        return os.path.join(out.url, WORK_NAME)
    key = hashlib.sha256(out.url.encode()).hexdigest()[:16]
    home = os.environ.get("TESSERA_CACHE", os.path.expanduser("~/.cache/tessera"))
    return os.path.join(home, "clean", key)


def _listing(out: Storage) -> list[str]:
    if not out.remote:
        return sorted(os.listdir(out.url)) if os.path.isdir(out.url) else []
    return [name for name in out.glob("*") if name]


def prepare_output(
    out: Storage, work: str, settings: dict[str, Any], overwrite: bool, say: Callable[[str], None]
) -> None:
    """Start, resume, or refuse: a finished clean is replaced only with `overwrite`; an
    unfinished one with the same settings is resumed; anything else in the folder is kept."""
    names = _listing(out)
    ours = [n for n in names if n.startswith(OUR_FILES)]
    foreign = [n for n in names if n not in ours and n != WORK_NAME]
    settings_path = os.path.join(work, "settings.json")
    if foreign:
        raise DataError(
            f"the output folder {out.url} holds files that are not a clean's "
            f"({', '.join(foreign[:5])}); give an empty or new folder."
        )
    finished = MANIFEST_NAME in names
    previous = None
    if os.path.exists(settings_path):
        with open(settings_path, encoding="utf-8") as file:
            previous = json.load(file)
    if finished or (ours and previous is None) or (previous is not None and previous != settings):
        if not overwrite:
            what = "a finished clean" if finished else "an unfinished clean with other settings"
            raise DataError(
                f"the output folder {out.url} holds {what}; pass --overwrite to replace it, "
                "or write to another folder."
            )
        say(f"replacing the clean in {out.url} (--overwrite)")
        for name in ours:
            out.remove(name)
        shutil.rmtree(work, ignore_errors=True)
        previous = None
    if previous is None:
        os.makedirs(work, exist_ok=True)
        write_atomic(settings_path, json.dumps(settings, indent=1).encode())
    for root, _, files in os.walk(work):  # files a killed worker left half-written
        for name in files:
            if ".tmp" in name:
                os.remove(os.path.join(root, name))


def _context(fork: bool) -> Any:
    """Workers come from a fork server that has imported the clean's modules (datasketch and
    scipy take seconds to import) once; fresh interpreters where there is none (Windows); a
    plain fork when a filter was registered by the main script, which no worker can import."""
    import multiprocessing

    if fork:
        return multiprocessing.get_context("fork")
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["tessera.data.clean.scan", "tessera.data.clean.write", "datasketch"]
    )
    return context


def _run(
    tasks: list[tuple[int, tuple[Any, ...]]],
    function: Callable[..., dict[str, Any]],
    workers: int,
    progress: Any,
    label: str,
    total_bytes: int,
    sizes: list[int],
    fork: bool = False,
) -> None:
    """Run `function(index, *args)` for each task, in worker processes when workers > 1."""
    task = progress.add_task(label, total=total_bytes or None)
    progress.update(task, completed=total_bytes - sum(sizes[i] for i, _ in tasks))
    if workers == 1 or len(tasks) <= 1:
        for index, arguments in tasks:
            function(index, *arguments)
            progress.advance(task, sizes[index])
        return
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=_context(fork)) as pool:
        futures = {pool.submit(function, index, *arguments): index for index, arguments in tasks}
        try:
            for future in as_completed(futures):
                future.result()
                progress.advance(task, sizes[futures[future]])
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def clean(
    inputs: Iterable[str],
    out: str,
    config: CleanConfig,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Clean `inputs` into the folder `out` (local or fsspec URL); returns the report."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    start = time.perf_counter()
    resolve_filters(config.quality)
    if config.dedup.near:  # a missing extra is said before any work starts
        from tessera.data.clean.near import make_signer

        make_signer(config.near)
    files = list_inputs(list(inputs), storage_options)
    output = Storage(out, storage_options)
    files = _outside(files, output, say)
    if not files:
        raise DataError("every input file is inside the output folder; nothing to clean.")
    if not output.remote:
        os.makedirs(output.url, exist_ok=True)
    work = work_folder(output)
    settings = {
        "version": WORK_VERSION,
        "config": config.model_dump(mode="json", exclude={"workers"}),  # any count resumes
        "inputs": [[f.url, f.size] for f in files],
    }
    prepare_output(output, work, settings, overwrite, say)
    sizes = [f.size for f in files]
    total = sum(sizes)
    scanned = sum(load_summary(work, i) is not None for i in range(len(files)))
    if scanned:
        say(f"resuming the clean in {out}: {scanned} of {len(files)} files already scanned")
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, disable=not progress, transient=True) as bar:
        modules = filter_modules(config.quality)
        fork = "__main__" in modules
        modules = tuple(m for m in modules if m != "__main__")
        todo = [
            (i, (f, config, work, storage_options, modules))
            for i, f in enumerate(files)
            if load_summary(work, i) is None
        ]
        _run(todo, scan_file, config.workers, bar, "scan", total, sizes, fork)
        scans = [load_summary(work, i) for i in range(len(files))]
        documents = sum(s["documents"] for s in scans)  # type: ignore[index]
        if documents == 0:
            shutil.rmtree(work, ignore_errors=True)  # nothing to resume; leave no half clean
            if not output.remote and not os.listdir(output.url):
                os.rmdir(output.url)
            raise DataError(
                f"the inputs ({len(files)} file(s), {total:,} bytes) hold no documents; check "
                "the paths, --format and --text-unit."
            )
        stats = merge_done(work)
        if stats is None:
            say("merging duplicate decisions across files")
            stats = merge(config, work, len(files))
        reasons = fate_reasons([name for name, _, _ in resolve_filters(config.quality)])
        todo = [
            (i, (f, config, work, output, reasons, f.url, storage_options))
            for i, f in enumerate(files)
            if load_part_summary(work, i) is None
        ]
        _run(todo, write_file, config.workers, bar, "write", total, sizes)
    parts = [load_part_summary(work, i) for i in range(len(files))]
    report = build_report(config, scans, stats, parts, time.perf_counter() - start)  # type: ignore[arg-type]
    output.write_bytes("report.json", json.dumps(report, indent=1).encode())
    output.write_bytes("report.md", markdown(report, out).encode())
    sources = _sources(files, scans, storage_options)
    totals = {k: report["output"][k] for k in ("documents", "tokens", "characters", "bytes")}
    manifest = new_manifest(
        "clean",
        sources,
        provenance_steps(config, report),
        files=[p["file"] for p in parts],  # type: ignore[index]
        totals=totals,
        license=config.license,
        tags=config.tags,
    )
    save_manifest(output.url, manifest, storage_options)
    shutil.rmtree(work, ignore_errors=True)
    return report


def _sources(files: list[InputFile], scans: list[Any], storage_options: Any) -> list[Any]:
    """Source entries, each with the manifest of the data set its file belongs to (say, a
    previous clean), if that folder has one."""
    manifests: dict[str, Any] = {}
    entries = []
    for source, scan in zip(files, scans):
        url = source.url
        folder = url.rsplit("/", 1)[0] if is_remote(url) else os.path.dirname(url)
        if folder not in manifests:
            manifests[folder] = read_manifest(folder, storage_options)
        entries.append(
            source_entry(url, scan["raw_bytes"], scan["content_hash"], manifests[folder])
        )
    return entries


def _outside(
    files: list[InputFile], output: Storage, say: Callable[[str], None]
) -> list[InputFile]:
    """Leave out input files inside the output folder (a clean written into its input)."""
    prefix = output.url.rstrip("/") + "/"
    inside = [f for f in files if f.url.startswith(prefix)]
    if inside:
        say(f"leaving out {len(inside)} input file(s) inside the output folder {output.url}")
    return [f for f in files if not f.url.startswith(prefix)]
