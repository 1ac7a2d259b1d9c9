"""Text data for language models: tokenizers, documents, packing and token files.

Importing this package registers the `text` data set for recipes.
"""

from tessera.data.text import registration as _registration  # noqa: F401
from tessera.data.text.documents import Document, read_documents
from tessera.data.text.packing import tokenize_to_folder
from tessera.data.text.token_file import TokenDataset, TokenFile
from tessera.data.text.tokenizers import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    load_tokenizer,
    tokenizer_from_dict,
)

__all__ = [
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "Document",
    "TokenDataset",
    "TokenFile",
    "Tokenizer",
    "load_tokenizer",
    "read_documents",
    "tokenize_to_folder",
    "tokenizer_from_dict",
]
