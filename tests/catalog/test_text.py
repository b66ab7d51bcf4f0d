"""Persian text normalisation: scalar rules, and the vectorised versions agreeing with them."""

from __future__ import annotations

import random
import unicodedata

import pyarrow as pa
import pytest

from catalog.text import (
    NFC_SAFE_RANGES,
    _map_two_byte_chars,
    _two_byte_plan,
    as_string_array,
    fold_digits,
    fold_digits_array,
    has_replacement_char_array,
    normalise_text,
    normalise_text_array,
    search_fold,
)

# A mixed sample: Arabic and Persian letter forms, digits of three kinds, tatweel, odd
# whitespace, presentation forms, decomposed letters, direction marks, nulls and blanks.
SAMPLE: list[str | None] = [
    "خیابان ولیعصر",
    "شهرك غرب",
    "علي آباد",
    "مصطفى",
    "  كوچه   ۱۲  ",
    "\tپلاک\u00a0\u00a0۴۵\t",
    "مـــیـدان",
    "می\u200cشود",
    "نیم\u200cفاصله\u200c",
    "۱۴۰۲/۰۵/۱۲",
    "١٤٠٢٫٥",
    "Street 5",
    "Café",
    "Cafe\u0301",
    "ا\u0653زادی",
    "خانه\u0654",
    "ﻋﻠﻲ ﻛﺮﻳﻢ",
    "ﻻله",
    "قیمت ۱۲ ﷼",
    "ﷲ",
    "line one\nline two",
    "  a \r\n  b  ",
    "\ufeffBOM first",
    "\u200fراست\u200f",
    "bad \ufffd bytes",
    "",
    "   ",
    "ـ",
    "\u3000\u2003",
    None,
    "中文 テスト",
    "ελληνικά",
    "x" * 300,
]


# --- normalise_text ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("علي", "علی"),  # ARABIC YEH
        ("مصطفى", "مصطفی"),  # ALEF MAKSURA
        ("شهرك", "شهرک"),  # ARABIC KAF
        ("كيك", "کیک"),
        ("مـــیـدان", "میدان"),  # tatweel
        ("  a   b  ", "a b"),
        ("a\t\tb", "a b"),
        ("a\u00a0b", "a b"),
        ("a\u2003 \u3000b", "a b"),
        ("line one\nline two", "line one\nline two"),  # line breaks are content
        ("\n\n text \n", "text"),
        ("\ufeffname", "name"),  # BOM left by a reader
        ("می\u200cشود", "می\u200cشود"),  # ZWNJ kept
        ("پلاک ۱۲ و ١٣ و 14", "پلاک ۱۲ و ١٣ و 14"),  # digits kept as written
        ("ﻋﻠﻲ", "علی"),  # presentation forms (from old PDFs)
        ("ﻙ", "ک"),
        ("ﻻ", "لا"),
        ("ﯾ", "ی"),  # Persian yeh initial form
        ("ا\u0653", "آ"),  # NFC: decomposed madda
        ("Cafe\u0301", "Café"),
        ("قیمت ﷼", "قیمت ﷼"),  # the rial sign is a symbol, not letters
    ],
)
def test_normalise_text(raw: str, expected: str) -> None:
    assert normalise_text(raw) == expected


@pytest.mark.parametrize("raw", [None, "", " ", "\t\n", "ـــ", " ـ ", "\u3000"])
def test_normalise_text_nothing_left_is_none(raw: str | None) -> None:
    assert normalise_text(raw) is None


def test_normalise_text_is_idempotent() -> None:
    for value in SAMPLE:
        once = normalise_text(value)
        assert normalise_text(once) == once


# --- fold_digits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("۰۱۲۳۴۵۶۷۸۹", "0123456789"),
        ("٠١٢٣٤٥٦٧٨٩", "0123456789"),
        ("۱۴۰۲/05/١٢", "1402/05/12"),  # mixed digit sets
        ("۳٫۵", "3.5"),  # Arabic decimal separator
        ("۱٬۲۳۴٬۵۶۷", "1234567"),  # Arabic thousands separator
        ("۱، ۲", "1، 2"),  # the Persian comma separates list items: kept
        ("کد ۱۲", "کد 12"),
        ("", ""),
    ],
)
def test_fold_digits(raw: str, expected: str) -> None:
    assert fold_digits(raw) == expected


# --- search_fold ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("شهرك", "شهرک"),
        ("علي", "علی"),
        ("می\u200cشود", "می شود"),
        ("می\u200dشود", "می شود"),
        ("مُحَمَّد", "محمد"),  # harakat
        ("أحمد", "احمد"),
        ("إیران", "ایران"),
        ("آزادی", "ازادی"),
        ("ٱلله", "الله"),
        ("مؤسسه", "موسسه"),
        ("مسئله", "مسیله"),
        ("مدرسة", "مدرسه"),
        ("خانهٔ", "خانه"),
        ("خانۀ", "خانه"),
        ("رحمٰن", "رحمن"),  # superscript alef
        ("منطقه ۱۲", "منطقه 12"),
        ("منطقه ١٢", "منطقه 12"),
        ("Tehran  PARK", "tehran park"),
        ("Straße", "strasse"),
        ("ﻋﻠﻲ", "علی"),
        ("\u200fتهران\u200f", "تهران"),
        ("چرا؟", "چرا?"),
    ],
)
def test_search_fold_equates(a: str, b: str) -> None:
    assert search_fold(a) == search_fold(b)


def test_search_fold_exact_key() -> None:
    assert search_fold("  شهرك   غرب\u200cشمالی ۱۴۰۲ ") == "شهرک غرب شمالی 1402"
    assert search_fold(None) == ""
    assert search_fold("   ") == ""


def test_search_fold_keeps_distinct_words_distinct() -> None:
    assert search_fold("کوچه") != search_fold("کوچک")
    assert search_fold("ناحیه ۱") != search_fold("ناحیه ۲")


# --- array versions ------------------------------------------------------------------------


def _variants(values: list[str | None]) -> list[pa.Array | pa.ChunkedArray]:
    """The same values as the shapes a reader can hand over."""
    arr = pa.array(values, type=pa.string())
    padded = pa.array(["pad", *values, "pad"], type=pa.string())
    half = len(values) // 2
    return [
        arr,
        arr.cast(pa.large_string()),
        arr.cast(pa.string_view()),
        padded.slice(1, len(values)),  # non-zero offset
        arr.dictionary_encode(),
        pa.chunked_array([values[:half], values[half:]], type=pa.string()),
        pa.chunked_array([values[:half], values[half:]], type=pa.large_string()),
    ]


@pytest.mark.parametrize("shape", range(7))
def test_normalise_text_array_equals_scalar(shape: int) -> None:
    out = normalise_text_array(_variants(SAMPLE)[shape])
    assert isinstance(out, pa.Array)
    assert out.to_pylist() == [normalise_text(v) for v in SAMPLE]
    out.validate(full=True)


@pytest.mark.parametrize("shape", range(7))
def test_fold_digits_array_equals_scalar(shape: int) -> None:
    out = fold_digits_array(_variants(SAMPLE)[shape])
    assert out.to_pylist() == [None if v is None else fold_digits(v) for v in SAMPLE]
    out.validate(full=True)


def test_normalise_text_array_empty_and_all_null() -> None:
    assert normalise_text_array(pa.array([], type=pa.string())).to_pylist() == []
    assert normalise_text_array(pa.chunked_array([], type=pa.string())).to_pylist() == []
    assert normalise_text_array(pa.nulls(3)).to_pylist() == [None] * 3
    assert normalise_text_array(pa.array(["", " "])).null_count == 2
    assert fold_digits_array(pa.array([None, None], type=pa.string())).to_pylist() == [None] * 2


def test_array_functions_reject_non_text() -> None:
    with pytest.raises(TypeError, match="string column"):
        normalise_text_array(pa.array([1, 2]))


def test_normalise_text_array_keeps_type() -> None:
    assert normalise_text_array(pa.array(["a"], type=pa.large_string())).type == pa.large_string()
    assert normalise_text_array(pa.array(["a"])).type == pa.string()


def test_normalise_text_array_many_rows_with_odd_characters() -> None:
    """Rows needing NFC or presentation forms are processed apart and put back in place."""
    rng = random.Random(7)
    values = [rng.choice(SAMPLE) for _ in range(5000)]
    out = normalise_text_array(pa.array(values))
    assert out.to_pylist() == [normalise_text(v) for v in values]


def test_two_byte_mapping_matches_translate_on_random_text() -> None:
    """The byte-level rewrite agrees with str.translate whatever surrounds the targets."""
    table = {"ي": "ی", "ك": "ک", "ـ": "", "۱": "1", "٫": ".", "é": "e"}
    plan = _two_byte_plan(table)
    alphabet = [*table, "ی", "ک", "a", " ", "€", "😀", "ß", "ـ", "۲", "\u200c"]
    rng = random.Random(42)
    values: list[str | None] = [
        None if rng.random() < 0.1 else "".join(rng.choices(alphabet, k=rng.randint(0, 12)))
        for _ in range(3000)
    ]
    trans = str.maketrans(table)
    expected = [None if v is None else v.translate(trans) for v in values]
    for typ in (pa.string(), pa.large_string()):
        arr = pa.array(["x", *values], type=typ).slice(1)
        out = _map_two_byte_chars(arr, plan)
        out.validate(full=True)
        assert out.to_pylist() == expected


def test_two_byte_plan_rejects_other_lengths() -> None:
    with pytest.raises(ValueError, match="2-byte"):
        _two_byte_plan({"a": "b"})
    with pytest.raises(ValueError, match="2-byte"):
        _two_byte_plan({"ی": "abc"})


def test_has_replacement_char_array() -> None:
    arr = pa.chunked_array([["ok", "bad\ufffd", None], ["\ufffd"]])
    assert has_replacement_char_array(arr).to_pylist() == [False, True, False, True]


def test_as_string_array_combines_chunks() -> None:
    arr = as_string_array(pa.chunked_array([["a"], ["b", None]]))
    assert isinstance(arr, pa.Array)
    assert arr.to_pylist() == ["a", "b", None]


def test_nfc_safe_ranges_are_really_nfc_stable() -> None:
    """Rows made only of these characters skip NFC, so NFC must never change them."""
    safe = {cp for lo, hi in NFC_SAFE_RANGES for cp in range(lo, hi + 1)}
    for cp in safe:
        ch = chr(cp)
        assert unicodedata.is_normalized("NFC", ch), hex(cp)
        assert unicodedata.combining(ch) == 0, hex(cp)
    # No safe character may be the second half of a canonical composition (NFC_QC=Maybe).
    for cp in range(0x110000):
        decomposition = unicodedata.decomposition(chr(cp))
        if decomposition and not decomposition.startswith("<"):
            parts = decomposition.split()
            if len(parts) == 2:
                assert int(parts[1], 16) not in safe, (hex(cp), decomposition)
