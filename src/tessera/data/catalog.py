"""The data sets Tessera's recipes, tests and evaluation use, by name: which files each one
holds, where those files are published, and their sha256 digests (docs/data/datasets.md).

`tessera data download NAME` fetches them into the data root (`tessera.data.root`). Every
digest is of the file as its publisher serves it; the URLs are pinned to a commit where the
publisher is a git repository, so a digest cannot go stale.
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.core.errors import DataError, did_you_mean

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
FASHION_MNIST_REPO = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/"
    "b2617bb6d3ffa2e429640350f613e3291e10b141/data/fashion"
)
CHAR_RNN = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/"
    "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare"
)
LLM_FOUNDRY = (
    "https://raw.githubusercontent.com/mosaicml/llm-foundry/"
    "8c8dd48f72168c5d51e2f7b151595892a8fba43d/scripts/eval/local_data"
)


@dataclass(frozen=True)
class DataFile:
    """One published file: its name in the set's folder, size, sha256 and where to get it
    (the publisher's URL first, then mirrors of the same bytes)."""

    name: str
    size: int
    sha256: str
    urls: tuple[str, ...]


@dataclass(frozen=True)
class DataSet:
    """A named data set: a folder `NAME/` under the data root holding `files`."""

    name: str
    title: str
    source: str
    license: str
    files: tuple[DataFile, ...]
    main_file: str | None = None  # what the bare name means in a recipe (`text: NAME`)
    system_folders: tuple[str, ...] = ()  # copies a system package installs

    def file(self, name: str) -> DataFile:
        for entry in self.files:
            if entry.name == name:
                return entry
        raise DataError(
            f"The data set {self.name!r} has no file {name!r}; "
            f"{did_you_mean(name, [f.name for f in self.files])}"
        )

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def _fashion(name: str, size: int, sha256: str) -> DataFile:
    return DataFile(
        name, size, sha256, (f"{FASHION_MNIST_URL}/{name}", f"{FASHION_MNIST_REPO}/{name}")
    )


_EVAL_FILES = {  # file stem: (LLM Foundry category folder, size, sha256)
    "arc_challenge": (
        "world_knowledge",
        365606,
        "1ae3aeedf1951d881cbd5c2e3a31e78a1993d251479afbe4cb413b6707244636",
    ),
    "arc_easy": (
        "world_knowledge",
        636665,
        "d2d12e59543acf9a5ef6079634a72b30215e36c2fd4236fff3bc855d287b87f5",
    ),
    "boolq": (
        "reading_comprehension",
        2210395,
        "454ff101e614370bb1807fe7ebbda6fdb57e794b9662cc1ccae211bf1ff626c8",
    ),
    "commonsense_qa": (
        "commonsense_reasoning",
        258861,
        "2771f63f8127c0725b1f6b0ef2cd2ef6469168ae5875fc8d276b25b4f32c8c1a",
    ),
    "copa": (
        "commonsense_reasoning",
        14627,
        "595dca44dec54c849490bd403a3e24a29e3b944065783222ebb0eb1a55298846",
    ),
    "gsm8k": (
        "symbolic_problem_solving",
        770037,
        "de44d36e1b80fae762efc1e858c875ba83c208de1aba99deda890fff6b5f732d",
    ),
    "jeopardy_small": (
        "world_knowledge",
        2827,
        "c3d692173917ac62e7e7ea406337ced1dfef4076247f3cb890328bd122295d1a",
    ),
    "lambada_openai": (
        "language_understanding",
        1895241,
        "411bfbe5b9054346b6a19299c0242670adbefb9162efd958593cbc0290b8c9dc",
    ),
    "lambada_openai_small": (
        "language_understanding",
        3033,
        "9df9ea3f93e03f5009b22d360eafc923ae959bf2b94c465099d6747a9e389343",
    ),
    "openbook_qa": (
        "commonsense_reasoning",
        88043,
        "adb2e5c7f8db810ddad4d6b2bf53dcc86dcc545499f7aafcaf42a8e179476c09",
    ),
    "piqa": (
        "commonsense_reasoning",
        533992,
        "d2870e73aec5154df3faf259b7700876e11608eebdf69e9d6667435673dbe4e0",
    ),
    "winograd_wsc": (
        "language_understanding",
        60523,
        "746336c27cd2e39a554cb1b8b4869d0f1ae2577ac5bfe799842d26bca5a5bf5e",
    ),
    "winogrande": (
        "language_understanding",
        312369,
        "ea1592526f3bfdd0948ed3acb1b4dfa3f83d23698917118688ee1df7f8d4b8d7",
    ),
}

CATALOG: dict[str, DataSet] = {
    "fashion-mnist": DataSet(
        name="fashion-mnist",
        title="Fashion-MNIST (60,000 + 10,000 28x28 grayscale images, 10 classes)",
        source="Zalando Research, github.com/zalandoresearch/fashion-mnist (the README's links)",
        license="MIT",
        files=(
            _fashion(
                "train-images-idx3-ubyte.gz",
                26421880,
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            ),
            _fashion(
                "train-labels-idx1-ubyte.gz",
                29515,
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            ),
            _fashion(
                "t10k-images-idx3-ubyte.gz",
                4422102,
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            ),
            _fashion(
                "t10k-labels-idx1-ubyte.gz",
                5148,
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ),
        ),
        system_folders=("/usr/share/datasets/fashion-mnist",),  # Debian: dataset-fashion-mnist
    ),
    "tinyshakespeare": DataSet(
        name="tinyshakespeare",
        title="Tiny Shakespeare (1,115,394 characters, the char-rnn corpus)",
        source="Andrej Karpathy, github.com/karpathy/char-rnn, data/tinyshakespeare",
        license="public domain text (Shakespeare's works)",
        files=(
            DataFile(
                "input.txt",
                1115394,
                "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                (f"{CHAR_RNN}/input.txt",),
            ),
        ),
        main_file="input.txt",
    ),
    "eval": DataSet(
        name="eval",
        title="In-context-learning evaluation sets (13 JSONL files, the gauntlet's tasks)",
        source="MosaicML LLM Foundry, github.com/mosaicml/llm-foundry, scripts/eval/local_data",
        license="each set's own licence (see LLM Foundry's EVAL_GAUNTLET.md)",
        files=tuple(
            DataFile(f"{stem}.jsonl", size, digest, (f"{LLM_FOUNDRY}/{folder}/{stem}.jsonl",))
            for stem, (folder, size, digest) in _EVAL_FILES.items()
        ),
    ),
}


def dataset(name: str) -> DataSet:
    """The catalog entry `name`, or a DataError listing the names there are."""
    if name not in CATALOG:
        raise DataError(f"There is no bundled data set {name!r}; {did_you_mean(name, CATALOG)}")
    return CATALOG[name]


def reference(name: str) -> tuple[DataSet, str] | None:
    """What a name in a recipe refers to: `tinyshakespeare` (a set's main file), `gsm8k`
    (an evaluation file, `eval/gsm8k.jsonl`) or `SET/FILE`; None if it names nothing here."""
    set_name, _, file = name.partition("/")
    if set_name in CATALOG:
        entry = CATALOG[set_name]
        if file:
            return entry, entry.file(file).name
        return (entry, entry.main_file) if entry.main_file else None
    if not file and name in _EVAL_FILES:
        return CATALOG["eval"], f"{name}.jsonl"
    return None
