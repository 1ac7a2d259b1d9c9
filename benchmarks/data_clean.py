"""Cleaning throughput on 2 CPU cores: Tessera beside datatrove, same corpus, same run.

Both tools do exact + near deduplication (word 5-gram MinHash, 14 bands) and the default
quality filters (Gopher quality and repetition, lorem ipsum, fraction of lines ending in
punctuation >= 0.12) on a corpus of a few hundred MB built from public-domain text with planted
duplicates, so dedup recall and precision are measured for both (`tessera.data.clean.planted`).
Each tool runs in a subprocess pinned to the same cores; wall time, MB/s, documents/s and the
peak resident memory of the whole process tree are recorded. datatrove's MinHash stage also
removes exact copies (their Jaccard similarity is 1), so it is run without a separate
exact-dedup pass, which would add two more passes over the data; its first stage writes the
documents that pass the filters beside their signatures, so its last stage reads them back
instead of filtering twice (one filter pass on each side).

The bounded-memory run puts Tessera in a memory cgroup (v1 or v2, needs root) whose limit is
below the corpus size; it must finish with the same output as the unlimited run. Each result
is written to --out as soon as it is measured, and `--skip-done` keeps those already there
(same corpus) instead of measuring them again.

The corpus (not committed) comes from Debian packages of public-domain texts:
  apt-get install bible-kjv libsword-utils sword-text-web   # KJV 1769, World English Bible
plus Tiny Shakespeare (shared/data/tinyshakespeare/input.txt). `--extract-base DIR` writes
their plain text to DIR (about 10 MB); the corpus is made of documents whose paragraphs are
random verses/speeches from that pool (so documents are distinct), with planted exact and near
copies (word edits, reordered paragraphs, added boilerplate) and some low-quality pages.

    python benchmarks/data_clean.py --extract-base /tmp/pd-base          # once, needs the debs
    python benchmarks/data_clean.py --base-dir /tmp/pd-base --corpus-mb 300 \
        --datatrove-python /tmp/datatrove-venv/bin/python --out results/     # the measurement
    python benchmarks/data_clean.py --smoke --out /tmp/smoke                 # under a minute
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
JUNK = [
    lambda r: "\n".join(f"- item {r.randint(1, 99)}" for _ in range(30)),  # bullet menu
    lambda r: "\n".join(["Click here to subscribe"] * 40),  # repeated lines
    lambda r: "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20,
    lambda r: " ".join(str(r.randint(0, 9999)) for _ in range(300)),  # numbers, no words
]


# ---- the corpus ------------------------------------------------------------------------------
def extract_base(folder: Path) -> None:
    """Plain text of the public-domain sources into `folder` (kjv.txt, web.txt, shakespeare)."""
    folder.mkdir(parents=True, exist_ok=True)
    kjv = subprocess.run(["bible", "-l9999", "gen1:1-rev22:21"], capture_output=True, text=True)
    verses = [re.sub(r"^\s*\d+\s+", "", line) for line in kjv.stdout.splitlines()]
    (folder / "kjv.txt").write_text("\n".join(v for v in verses if len(v) > 20) + "\n")
    raw = subprocess.run(["mod2imp", "engWEB2015eb"], capture_output=True, text=True).stdout
    raw = re.sub(r"<note[^>]*>.*?</note>", "", raw, flags=re.S)
    lines = [re.sub(r"<[^>]+>", "", line).strip() for line in raw.splitlines()]
    text = [line for line in lines if len(line) > 20 and not line.startswith("$$$")]
    (folder / "web.txt").write_text("\n".join(text) + "\n")
    shutil.copyfile(SHAKESPEARE, folder / "shakespeare.txt")


def sentences(folder: Path | None) -> list[str]:
    """The pool: verses, and Shakespeare's speeches joined into one line each."""
    pool: list[str] = []
    if folder is not None:
        for name in ("kjv.txt", "web.txt"):
            if (folder / name).exists():
                pool += [line for line in (folder / name).read_text().splitlines() if line]
        shakespeare = folder / "shakespeare.txt"
    else:
        shakespeare = SHAKESPEARE
    if shakespeare.exists():
        for block in shakespeare.read_text().split("\n\n"):
            lines = block.strip().splitlines()[1:]  # drop the speaker's name
            if lines:
                pool.append(" ".join(lines))
    if not pool:
        raise SystemExit(f"no base text found (looked in {folder} and {SHAKESPEARE})")
    return pool


def build_corpus(pool: list[str], target_bytes: int, folder: Path, files: int, seed: int) -> int:
    """Write the corpus as JSONL files (record i of file f is document f + files * i, with an
    `id`); returns the number of documents. The planted groups go to folder/truth.json."""
    from tessera.data.clean.planted import plant

    rng = random.Random(seed)
    originals, size, junk = [], 0, set()
    while size < target_bytes / 1.35:  # planted copies add about a third
        if rng.random() < 0.03:
            text = rng.choice(JUNK)(rng)
            junk.add(len(originals))
        else:
            paragraphs = [
                " ".join(rng.choices(pool, k=rng.randint(2, 6))) for _ in range(rng.randint(3, 7))
            ]
            text = "\n\n".join(paragraphs)
        originals.append(text)
        size += len(text)
    corpus = plant(originals, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    for part in range(files):
        with open(folder / f"{part:03d}.jsonl", "w", encoding="utf-8") as handle:
            for index in range(part, len(corpus.documents), files):
                record = {"id": str(index), "text": corpus.documents[index]}
                handle.write(json.dumps(record) + "\n")
    truth = {
        "exact": corpus.exact_groups,
        "near": corpus.near_groups,
        "count": len(corpus.documents),
        "junk": [i for i, origin in enumerate(corpus.origin) if origin in junk],
    }
    (folder.parent / "truth.json").write_text(json.dumps(truth))
    return len(corpus.documents)


# ---- running a tool --------------------------------------------------------------------------
def _resident(pid: int) -> int:
    """Proportional set size (shared pages split among their sharers), else resident size."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as file:
            for line in file:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _tree_memory(pid: int) -> int:
    """Memory of a process and all its descendants (PSS, so forked copies are not counted
    twice)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                parent = int(file.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += _resident(current)
        stack.extend(children.get(current, []))
    return total


def memory_cgroup(limit: int) -> Path:
    """A fresh memory cgroup limited to `limit` bytes (v2 `memory.max`, else v1)."""
    for root, limit_file in (
        (Path("/sys/fs/cgroup"), "memory.max"),
        (Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"),
    ):
        if (root / "cgroup.procs").exists():
            group = root / f"tessera-bench-{os.getpid()}"
            try:
                group.mkdir(exist_ok=True)
                (group / limit_file).write_text(str(limit))
                swap = group / "memory.memsw.limit_in_bytes"  # v1: no swapping out either
                if swap.exists():
                    swap.write_text(str(limit))
            except OSError:
                continue
            return group
    raise SystemExit("--memory-limit-mb needs a writable memory cgroup (run as root)")


def _group_peak(group: Path) -> int:
    for name in ("memory.peak", "memory.max_usage_in_bytes"):
        if (group / name).exists():
            return int((group / name).read_text())
    return 0


def run_measured(command: list[str], cores: set[int], group: Path | None, env: dict) -> dict:
    """Run a command pinned to `cores` (and inside the memory cgroup `group`)."""

    def prepare() -> None:
        os.sched_setaffinity(0, cores)
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=env,
        preexec_fn=prepare,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = [0]

    def watch() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_memory(process.pid))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = process.communicate()[0]
    seconds = time.perf_counter() - start
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{output[-3000:]}")
    result = {"seconds": seconds, "peak_memory_mb": round(peak[0] / 2**20, 1)}
    if group is not None:  # the cgroup's own peak counts page cache too
        result["cgroup_peak_mb"] = round(_group_peak(group) / 2**20, 1)
    return result | {"log": output[-2000:]}


def tessera_kept(out: Path, files: int) -> set[int]:
    import zstandard

    kept = set()
    for part in sorted(out.glob("part-*.jsonl.zst")):
        with zstandard.open(part, "rt", encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                kept.add(int(Path(record["source"]).stem) + files * record["record"])
    return kept


def datatrove_kept(out: Path) -> set[int]:
    import gzip

    kept = set()
    for part in sorted(out.glob("*.jsonl.gz")):
        with gzip.open(part, "rt", encoding="utf-8") as handle:
            kept.update(int(json.loads(line)["id"]) for line in handle)
    return kept


def datatrove_worker(corpus: Path, work: Path, tasks: int) -> None:
    """The datatrove pipeline (runs in datatrove's own virtual environment)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupCluster, MinhashDedupFilter
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter, LambdaFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)

    def punctuation(document) -> bool:
        lines = [line.strip() for line in document.text.splitlines() if line.strip()]
        ending = sum(line.endswith((".", "!", "?", '"', "'", "\u201d")) for line in lines)
        return bool(lines) and ending >= 0.12 * len(lines)

    def filters() -> list:
        return [
            JsonlReader(str(corpus)),
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            LambdaFilter(lambda document: "lorem ipsum" not in document.text.lower()),
            LambdaFilter(punctuation),
        ]

    def stage(pipeline: list, count: int, name: str, depends=None) -> LocalPipelineExecutor:
        return LocalPipelineExecutor(
            pipeline,
            tasks=count,
            workers=min(count, 2),
            logging_dir=str(work / "logs" / name),
            depends=depends,
        )

    filtered = str(work / "filtered")
    signatures = stage(
        [*filters(), JsonlWriter(filtered), MinhashDedupSignature(str(work / "sigs"), config)],
        tasks,
        "signatures",
    )
    buckets = stage(
        [MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)],
        config.num_buckets,
        "buckets",
        signatures,
    )
    clusters = stage(
        [MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config)],
        1,
        "clusters",
        buckets,
    )
    final = stage(
        [
            JsonlReader(filtered),
            MinhashDedupFilter(str(work / "remove")),
            JsonlWriter(str(work / "out")),
        ],
        tasks,
        "filter",
        clusters,
    )
    final.run()


# ---- the measurement -------------------------------------------------------------------------
def prepare_corpus(args: argparse.Namespace, work: Path) -> dict:
    """Build the corpus in `work` (or keep the one there, built with the same settings)."""
    settings = {"corpus_mb": args.corpus_mb, "files": args.files, "base_dir": args.base_dir}
    stamp = work / "corpus.json"
    if args.skip_done and stamp.exists() and json.loads(stamp.read_text())["settings"] == settings:
        return json.loads(stamp.read_text())
    if work.exists():
        shutil.rmtree(work)
    corpus = work / "corpus"
    pool = sentences(Path(args.base_dir) if args.base_dir else None)
    documents = build_corpus(pool, int(args.corpus_mb * 1e6), corpus, args.files, seed=0)
    corpus_bytes = sum(p.stat().st_size for p in corpus.iterdir())
    description = {"settings": settings, "documents": documents, "corpus_bytes": corpus_bytes}
    stamp.write_text(json.dumps(description))
    return description


def measure(args: argparse.Namespace, save) -> dict:
    """Measure each tool in turn, calling `save(summary)` after each one."""
    work = Path(args.work)
    described = prepare_corpus(args, work)
    corpus, documents, corpus_bytes = (
        work / "corpus",
        described["documents"],
        described["corpus_bytes"],
    )
    truth = json.loads((work / "truth.json").read_text())
    from tessera.data.clean.planted import PlantedCorpus, score

    planted = PlantedCorpus(exact_groups=truth["exact"], near_groups=truth["near"])
    planted.documents = [""] * truth["count"]
    junk = frozenset(truth["junk"])  # low-quality pages: the filters' to remove, not dedup's
    cores = {int(c) for c in args.cores.split(",")}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OPENBLAS_NUM_THREADS": "1"}
    summary = {
        "corpus_bytes": corpus_bytes,
        "documents": documents,
        "cores": sorted(cores),
        "machine": os.uname().nodename,
        "python": sys.version.split()[0],
        "results": [],
    }
    previous = Path(args.out or "/nonexistent") / "data_clean.json"
    if args.skip_done and previous.exists():
        old = json.loads(previous.read_text())
        if old.get("corpus_bytes") == corpus_bytes and old.get("documents") == documents:
            summary["results"] = old["results"]
            summary["planted_copies"] = old.get("planted_copies")
    done = {entry["key"] for entry in summary["results"] if "key" in entry}

    def record(key: str, tool: str, run: dict, **extra) -> None:
        run["mb_per_s"] = round(corpus_bytes / 1e6 / run["seconds"], 2)
        run["docs_per_s"] = round(documents / run["seconds"], 1)
        summary["results"].append({"key": key, "tool": tool, **run, **extra})
        save(summary)

    def tessera(out: str) -> list[str]:
        return [sys.executable, "-m", "tessera.cli", "data", "clean", str(corpus), "--out",
                str(work / out), "--workers", str(len(cores)), "--no-progress"]  # fmt: skip

    if "tessera" not in done:
        shutil.rmtree(work / "tessera", ignore_errors=True)
        run = run_measured(tessera("tessera"), cores, None, env)
        run |= score(planted, tessera_kept(work / "tessera", args.files), junk)
        summary["planted_copies"] = run["planted_copies"]
        record("tessera", "tessera", run)
    if args.datatrove_python and "datatrove" not in done:
        shutil.rmtree(work / "datatrove", ignore_errors=True)
        command = [
            args.datatrove_python,
            __file__,
            "--datatrove-worker",
            str(corpus),
            "--work",
            str(work / "datatrove"),
            "--tasks",
            str(len(cores)),
        ]
        run = run_measured(command, cores, None, {**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        run |= score(planted, datatrove_kept(work / "datatrove" / "out"), junk)
        record("datatrove", "datatrove", run)
    if args.memory_limit_mb and "limited" not in done:
        shutil.rmtree(work / "limited", ignore_errors=True)
        group = memory_cgroup(args.memory_limit_mb * 2**20)
        try:
            run = run_measured(tessera("limited"), cores, group, {**env, "MALLOC_ARENA_MAX": "2"})
        finally:
            group.rmdir()
        record(
            "limited",
            f"tessera (memory cgroup limit {args.memory_limit_mb} MB)",
            run,
            same_output_as_unlimited=_same(work, "limited"),
        )
    return summary


def _same(work: Path, other: str) -> bool:
    def parts(name: str) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted((work / name).glob("part-*"))}

    return parts("tessera") == parts(other)


def markdown(summary: dict) -> str:
    lines = [
        "# Cleaning throughput: Tessera and datatrove",
        "",
        f"Corpus: {summary['corpus_bytes'] / 1e6:.1f} MB, {summary['documents']:,} documents "
        f"({summary['planted_copies']:,} planted copies), cores {summary['cores']}; exact + near "
        "dedup and the default quality filters.",
        "",
        "| tool | seconds | MB/s | documents/s | exact recall | near recall | precision | "
        "peak memory (MB, PSS) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in summary["results"]:
        recall = (
            f"{r['exact_recall']:.3f} | {r['near_recall']:.3f} | {r['precision']:.3f}"
            if "exact_recall" in r
            else "- | - | -"
        )
        lines.append(
            f"| {r['tool']} | {r['seconds']:.1f} | {r['mb_per_s']} | {r['docs_per_s']} | "
            f"{recall} | {r['peak_memory_mb']} |"
        )
    for r in summary["results"]:
        if "same_output_as_unlimited" in r:
            same = "the same" if r["same_output_as_unlimited"] else "NOT the same"
            lines += [
                "",
                f"{r['tool']}: finished on the {summary['corpus_bytes'] / 1e6:.0f} MB corpus with "
                f"output {same} as without the limit; the cgroup's peak (page cache included) "
                f"{r.get('cgroup_peak_mb', '-')} MB; peak PSS {r['peak_memory_mb']} MB (PSS "
                "also counts shared-library pages charged elsewhere).",
            ]
    tools = {r["tool"]: r for r in summary["results"]}
    if "datatrove" in tools:
        ratio = tools["tessera"]["mb_per_s"] / tools["datatrove"]["mb_per_s"]
        lines += ["", f"Tessera / datatrove throughput: {ratio:.2f}x."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="folder for data_clean.json and data_clean.md")
    parser.add_argument("--smoke", action="store_true", help="a 3 MB corpus (under a minute)")
    parser.add_argument("--corpus-mb", type=float, default=300)
    parser.add_argument("--files", type=int, default=64, help="input JSONL files")
    parser.add_argument("--base-dir", default=None, help="from --extract-base")
    parser.add_argument("--extract-base", default=None, metavar="DIR")
    parser.add_argument("--datatrove-python", default=None, help="python of datatrove's venv")
    parser.add_argument("--cores", default="0,1", help="CPU cores both tools are pinned to")
    parser.add_argument(
        "--memory-limit-mb",
        type=int,
        default=None,
        help="also run Tessera inside a memory cgroup with this limit (needs root)",
    )
    parser.add_argument(
        "--skip-done",
        action="store_true",
        help="keep the corpus and the results already in --out instead of measuring them again",
    )
    parser.add_argument("--work", default="/tmp/tessera-clean-bench")
    parser.add_argument("--datatrove-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tasks", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.datatrove_worker:
        datatrove_worker(Path(args.datatrove_worker), Path(args.work), args.tasks)
        return
    if args.extract_base:
        extract_base(Path(args.extract_base))
        return
    if args.smoke:
        args.corpus_mb, args.files = min(args.corpus_mb, 3), min(args.files, 4)
    sys.path.insert(0, str(ROOT / "src"))

    def save(summary: dict) -> None:
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "data_clean.json").write_text(json.dumps(summary, indent=1))
            (out / "data_clean.md").write_text(markdown(summary))

    print(markdown(measure(args, save)))


if __name__ == "__main__":
    main()
