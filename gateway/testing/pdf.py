"""Writing a small text PDF with pypdf, for tests and benchmarks of the knowledge loaders.

Pages are separated by form feeds; a blank line is kept as vertical space, so a reader in
layout mode sees paragraphs.
"""

from __future__ import annotations

import io

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

LINE_HEIGHT = 14


def text_pdf(text: str) -> bytes:
    """A PDF of `text` in Helvetica 11, one page per form-feed-separated part (Latin-1 only)."""
    writer = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    for part in text.split("\f"):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        operations = [f"BT /F1 11 Tf 72 740 Td {LINE_HEIGHT} TL"]
        for line in part.strip("\n").splitlines():
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            operations.append(f"({escaped}) Tj T*")
        operations.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(operations).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
