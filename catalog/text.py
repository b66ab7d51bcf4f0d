"""Persian text normalisation and search folding, for single values and Arrow columns.

Municipal files mix Arabic and Persian letter forms (ي/ی, ك/ک), Persian, Arabic-Indic and
ASCII digits, tatweel and stray whitespace, so the same street name can be spelt several
ways. The ETL runs :func:`normalise_text_array` over every text column of every load, so
the array functions are vectorised (``pyarrow.compute`` plus one numpy pass over the UTF-8
bytes); the scalar functions define the behaviour and the tests hold the two equal.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "as_string_array",
    "fold_digits",
    "fold_digits_array",
    "has_replacement_char_array",
    "normalise_text",
    "normalise_text_array",
    "search_fold",
]

# --- character tables ----------------------------------------------------------------------

PERSIAN_DIGITS = "۰۱۲۳۴۵۶۷۸۹"  # U+06F0..U+06F9
ARABIC_DIGITS = "٠١٢٣٤٥٦٧٨٩"  # U+0660..U+0669
TATWEEL = "\u0640"
ZWNJ = "\u200c"
ZWJ = "\u200d"

# Arabic letter forms that Persian writes differently; all are 2-byte UTF-8 characters,
# which lets the array version rewrite them in place (see _map_two_byte_chars).
_LETTERS: dict[str, str] = {
    "\u064a": "\u06cc",  # ي ARABIC YEH -> ی FARSI YEH
    "\u0649": "\u06cc",  # ى ALEF MAKSURA -> ی
    "\u0643": "\u06a9",  # ك ARABIC KAF -> ک KEHEH
    TATWEEL: "",  # ـ kashida: only stretches a word visually
}

_DIGITS: dict[str, str] = {
    **{c: str(i) for i, c in enumerate(PERSIAN_DIGITS)},
    **{c: str(i) for i, c in enumerate(ARABIC_DIGITS)},
    "\u066b": ".",  # ٫ ARABIC DECIMAL SEPARATOR
    "\u066c": "",  # ٬ ARABIC THOUSANDS SEPARATOR
    # ، (U+060C) is left alone: it is also the ordinary Persian comma between list items.
}

# Whitespace. "Horizontal" runs collapse to one space; line breaks are kept so multi-line
# notes survive, but are trimmed at the ends along with a stray BOM.
_OTHER_HSPACE = "\t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"  # a regex class body
# Runs of two or more, or a single non-ASCII/tab space; lone ASCII spaces are left untouched.
_HSPACE_RUN = f"[ {_OTHER_HSPACE}]{{2,}}|[{_OTHER_HSPACE}]"
_TRIM_CHARS = (
    " \t\n\r\v\f\x1c\x1d\x1e\x1f\x85\u00a0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_HSPACE_RUN_RE = re.compile(_HSPACE_RUN)

# Arabic presentation forms (positional glyph codes from old PDFs and legacy software) map
# to their letters, i.e. NFKC restricted to letters. Ligatures that expand to phrases
# (containing a space) and symbols such as the rial sign are left alone.
_POSITIONAL_TAGS = ("<isolated>", "<initial>", "<medial>", "<final>")


def _presentation_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for cp in (*range(0xFB50, 0xFE00), *range(0xFE70, 0xFEFF)):
        ch = chr(cp)
        tag = unicodedata.decomposition(ch).split(" ", 1)[0]
        if tag not in _POSITIONAL_TAGS or not unicodedata.category(ch).startswith("L"):
            continue
        letters = unicodedata.normalize("NFKC", ch)
        if any(c.isspace() for c in letters):
            continue
        table[cp] = "".join(_LETTERS.get(c, c) for c in letters)
    return table


_PRESENTATION = _presentation_table()
_NORMALISE_TABLE: dict[int, str] = {ord(k): v for k, v in _LETTERS.items()} | _PRESENTATION
_DIGIT_TABLE: dict[int, str] = {ord(k): v for k, v in _DIGITS.items()}

# Characters NFC leaves alone whatever surrounds them (stable starters that never compose
# with a preceding character). Rows made only of these skip NFC in the array version;
# tests/catalog/test_text.py checks the claim against unicodedata.
NFC_SAFE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0001, 0x02FF),  # ASCII, Latin-1, Latin Extended, IPA, spacing modifiers
    (0x0600, 0x060F),  # Arabic number signs, ، and other punctuation
    (0x061B, 0x064A),  # ؛ ؟ and the Arabic letters (no harakat)
    (0x0660, 0x066F),  # Arabic-Indic digits, ٫ ٬ ٪
    (0x0671, 0x06D5),  # extended letters: پ چ ژ ک گ ی ۀ ...
    (0x06EE, 0x06FF),  # Persian digits and more letters
    (0x200B, 0x200F),  # ZWSP, ZWNJ, ZWJ, LRM, RLM
    (0x2010, 0x2027),  # dashes, quotes, ellipsis
    (0x202A, 0x202E),  # bidi embeddings
    (0x2030, 0x205E),  # per mille, primes, more punctuation
    (0x20A0, 0x20C0),  # currency signs
)
_NOT_NFC_SAFE = "[^" + "".join(f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in NFC_SAFE_RANGES) + "]"
_PRESENTATION_CHARS = "[\\x{FB50}-\\x{FDFF}\\x{FE70}-\\x{FEFE}]"

# --- scalar functions ----------------------------------------------------------------------


def normalise_text(s: str | None) -> str | None:
    """Return the stored form of a text value, or None when nothing is left.

    Arabic ي ى ك become Persian ی ک (presentation forms too), tatweel goes, the text is put
    in NFC (so a decomposed آ equals the composed one), runs of spaces and tabs become one
    space and the ends are trimmed. ZWNJ, line breaks and digits are kept: they carry meaning
    in names, notes and codes.
    """
    if s is None:
        return None
    s = unicodedata.normalize("NFC", s.translate(_NORMALISE_TABLE))
    s = _HSPACE_RUN_RE.sub(" ", s).strip(_TRIM_CHARS)
    return s or None


def fold_digits(s: str) -> str:
    """Turn Persian/Arabic-Indic digits into ASCII, ٫ into '.', and drop ٬, before parsing."""
    return s.translate(_DIGIT_TABLE)


def _search_table() -> dict[int, str]:
    table: dict[int, str] = dict(_DIGIT_TABLE)
    # Word joiners count as word breaks: "می‌شود" must match "می شود" and "میشود" users type.
    table |= {ord(c): " " for c in (ZWNJ, ZWJ, "\u200b")}
    # Invisible direction marks and BOMs say nothing about the words.
    for c in (
        "\u061c",
        "\u200e",
        "\u200f",
        "\ufeff",
        *map(chr, range(0x202A, 0x202F)),
        *map(chr, range(0x2066, 0x206A)),
    ):
        table[ord(c)] = ""
    # Harakat, superscript alef, hamza above/below and other Arabic combining marks.
    for cp in range(0x0610, 0x0700):
        if unicodedata.category(chr(cp)) == "Mn":
            table[cp] = ""
    table |= {ord(c): "\u0627" for c in "أإآٱٲٳ"}  # alef variants -> ا
    table |= {
        0x0624: "\u0648",  # ؤ -> و
        0x0626: "\u06cc",  # ئ -> ی
        0x0629: "\u0647",  # ة -> ه
        0x06C0: "\u0647",  # ۀ -> ه
        0x06BE: "\u0647",  # ھ (heh doachashmee, from Arabic keyboards) -> ه
        0x060C: ",",  # ، -> ,
        0x061B: ";",  # ؛ -> ;
        0x061F: "?",  # ؟ -> ?
        0x066A: "%",  # ٪ -> %
    }
    return table


_SEARCH_TABLE = _search_table()


def search_fold(s: str | None) -> str:
    """Return the key Persian-aware search compares, so that ``شهرك`` finds ``شهرک``.

    On top of :func:`normalise_text`: NFKC and casefold (Latin case, ligatures, full-width
    forms), digits to ASCII, ZWNJ/ZWJ to spaces, Arabic diacritics and direction marks
    removed, alef/hamza/teh-marbuta variants to their base letters, whitespace collapsed.
    Lossy by design: use it for keys, never for stored text.
    """
    t = normalise_text(s)
    if t is None:
        return ""
    t = unicodedata.normalize("NFKC", t.casefold()).translate(_SEARCH_TABLE)
    return " ".join(t.split())


# --- array functions -----------------------------------------------------------------------


def as_string_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous string/large_string Array from whatever string-like column we got."""
    if isinstance(arr, pa.ChunkedArray):
        typ = arr.type
        if pa.types.is_dictionary(typ):
            typ = typ.value_type
        if pa.types.is_string(typ) and sum(c.nbytes for c in arr.chunks) >= 2**31 - 1:
            typ = pa.large_string()  # a combined `string` would overflow its int32 offsets
        chunks = [as_string_array(c.cast(typ) if c.type != typ else c) for c in arr.chunks]
        if not chunks:
            return pa.array([], type=_plain_type(typ))
        return pa.concat_arrays(chunks) if len(chunks) > 1 else chunks[0]
    typ = arr.type
    if pa.types.is_dictionary(typ):
        arr = arr.dictionary_decode()
        typ = arr.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return arr
    if pa.types.is_null(typ):
        return arr.cast(pa.string())
    if pa.types.is_string_view(typ):
        return arr.cast(pa.large_string())
    raise TypeError(f"expected a string column, got {typ}")


def _plain_type(typ: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(typ):
        return pa.large_string()
    return pa.string()


def _two_byte_plan(table: Mapping[str, str]) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """Lookup tables for _map_two_byte_chars: lead bytes, then per 16-bit pair (out bytes)."""
    leads: set[int] = set()
    kind = np.full(65536, -1, dtype=np.int8)  # -1: no match, else output length 0/1/2
    out = np.zeros((65536, 2), dtype=np.uint8)
    for src, dst in table.items():
        sb, db = src.encode(), dst.encode()
        if len(sb) != 2 or len(db) > 2:
            raise ValueError(f"{src!r} -> {dst!r} is not a 2-byte to <=2-byte mapping")
        code = sb[0] << 8 | sb[1]
        leads.add(sb[0])
        kind[code] = len(db)
        # a 1-byte result sits in the second slot; the lead byte is the one deleted
        out[code] = (db[0], db[1]) if len(db) == 2 else (0, db[0] if db else 0)
    return tuple(sorted(leads)), kind, out


def _map_two_byte_chars(
    arr: pa.Array, plan: tuple[tuple[int, ...], np.ndarray, np.ndarray]
) -> pa.Array:
    """Replace 2-byte UTF-8 characters by strings of at most 2 bytes, in one numpy pass.

    pc.replace_substring costs one pass over the column per character; digit folding alone
    would take 22. Lead bytes (0xC2-0xDF) never occur as continuation bytes, so a matching
    byte pair is always a whole character.
    """
    leads, kind, out = plan
    bufs = arr.buffers()
    n = len(arr)
    if n == 0 or bufs[2] is None:
        return arr
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(bufs[1], dtype=off_type, count=arr.offset + n + 1)[arr.offset :]
    start, end = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(bufs[2], dtype=np.uint8, count=end)[start:]
    if data.size < 2:
        return arr
    heads = data[:-1]
    is_lead = heads == leads[0]
    for b in leads[1:]:
        is_lead |= heads == b
    cand = np.flatnonzero(is_lead)
    if cand.size == 0:
        return arr
    codes = (data[cand].astype(np.int32) << 8) | data[cand + 1]
    lengths = kind[codes]
    hit_mask = lengths >= 0
    if not hit_mask.any():
        return arr
    hit, codes, lengths = cand[hit_mask], codes[hit_mask], lengths[hit_mask]
    new = data.copy()
    new[hit] = out[codes, 0]
    new[hit + 1] = out[codes, 1]
    rel = offsets - start
    deleted = np.sort(np.concatenate([hit[lengths < 2], hit[lengths == 0] + 1]))
    if deleted.size:
        keep = np.ones(new.size, dtype=bool)
        keep[deleted] = False
        new = new[keep]
        rel = rel - np.searchsorted(deleted, rel).astype(off_type)
    validity = None
    if arr.null_count:
        validity = pc.is_valid(arr).buffers()[1]  # fresh bitmap at offset 0
    return pa.Array.from_buffers(
        arr.type,
        n,
        [validity, pa.py_buffer(rel.astype(off_type, copy=False)), pa.py_buffer(new)],
        null_count=arr.null_count,
    )


_LETTER_PLAN = _two_byte_plan(_LETTERS)
_DIGIT_PLAN = _two_byte_plan(_DIGITS)


def _apply_on_mask(arr: pa.Array, mask: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """Apply fn to the rows where mask is true only; they are usually few or none."""
    mask = mask.fill_null(False)
    if not pc.any(mask).as_py():
        return arr
    return pc.replace_with_mask(arr, mask, fn(arr.filter(mask)))


def _translate_rows(arr: pa.Array, table: Mapping[int, str]) -> pa.Array:
    return pa.array([v.translate(table) for v in arr.to_pylist()], type=arr.type)


def _nfc_and_forms(arr: pa.Array) -> pa.Array:
    has_forms = pc.match_substring_regex(arr, _PRESENTATION_CHARS)
    arr = _apply_on_mask(arr, has_forms, lambda a: _translate_rows(a, _NORMALISE_TABLE))
    return pc.utf8_normalize(arr, form="NFC")


def normalise_text_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Vectorised :func:`normalise_text`: nulls stay null and empty results become null.

    Chunked input is combined into one Array (``large_string`` if ``string`` would
    overflow). Only rows with characters outside NFC_SAFE_RANGES pay for NFC, and only rows
    with presentation forms go through Python.
    """
    a = _map_two_byte_chars(as_string_array(arr), _LETTER_PLAN)
    a = _apply_on_mask(a, pc.match_substring_regex(a, _NOT_NFC_SAFE), _nfc_and_forms)
    a = pc.replace_substring_regex(a, _HSPACE_RUN, " ")
    a = pc.utf8_trim(a, characters=_TRIM_CHARS)
    empty = pc.equal(pc.binary_length(a), 0)
    return pc.if_else(empty, pa.scalar(None, a.type), a)


def fold_digits_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Vectorised :func:`fold_digits`; nulls preserved, one pass over the bytes."""
    return _map_two_byte_chars(as_string_array(arr), _DIGIT_PLAN)


def has_replacement_char_array(arr: pa.Array | pa.ChunkedArray) -> pa.BooleanArray:
    """True where a value contains U+FFFD, the mark of a wrongly guessed encoding; null->False."""
    return pc.match_substring(as_string_array(arr), "\ufffd").fill_null(False)
