"""Documents as training material: text with provenance from PDF, DOCX, PPTX, HTML, Markdown and
plain text (one file or a ZIP of many), and chunks of it for generating data from.

    documents = extract(path, "manual.pdf")           # list[Document], each a list of Blocks
    chunks = chunk_documents(documents, ChunkSettings(max_tokens=512, overlap_tokens=64))

Formats are decided from the bytes, never the file name; every read is bounded by
`DocumentLimits`, and a file that breaks a bound or cannot be read safely is a `DataFileError`
saying why. See docs/synthesis.md.
"""

from tuneforge.data.documents.chunking import (
    Chunk,
    ChunkSettings,
    TokenCounter,
    char_counter,
    chunk_document,
    chunk_documents,
    gemma_counter,
)
from tuneforge.data.documents.extract import all_blocks, extract
from tuneforge.data.documents.limits import DEFAULT_DOCUMENT_LIMITS, DocumentLimits
from tuneforge.data.documents.model import Block, Document, DocumentFormat

__all__ = [
    "DEFAULT_DOCUMENT_LIMITS",
    "Block",
    "Chunk",
    "ChunkSettings",
    "Document",
    "DocumentFormat",
    "DocumentLimits",
    "TokenCounter",
    "all_blocks",
    "char_counter",
    "chunk_document",
    "chunk_documents",
    "extract",
    "gemma_counter",
]
