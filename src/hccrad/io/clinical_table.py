"""The clinical table: reading a CSV or XLSX as text, and the rules that read its values (numbers, Child-Pugh, BCLC).

One set of rules serves the study table, ``hccrad predict`` and the web app: a number is refused when it is
ambiguous (``1,234``), a bound (``<20``) or not a number (``NaN``), never guessed.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BCLC_STAGES = ("0", "A", "B", "C", "D")
CHILD_PUGH_GRADES = ("A", "B", "C")


class ClinicalTableError(ValueError):
    """A clinical table that cannot be read as one column per field (its message names the file and columns)."""


def read_clinical_table(path: Path, sheet: str | int | None = None) -> pd.DataFrame:
    """Read a CSV/TSV or XLSX clinical table with every cell as text (types are checked per field).

    A UTF-8 byte-order mark is removed and header names are trimmed. Two columns with the same name (after
    trimming) are a :class:`ClinicalTableError` naming both, since either could hold the field: pandas would
    otherwise use the first without a word.
    """
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm", ".xls"):
        sheets = pd.ExcelFile(path).sheet_names
        if isinstance(sheet, str) and sheet not in sheets:
            close = [name for name in sheets if name.casefold() == sheet.casefold()] or difflib.get_close_matches(
                sheet, sheets, n=1, cutoff=0.5)
            hint = f"; did you mean `sheet: {close[0]}`?" if close else ""
            raise ClinicalTableError(f"clinical table {path} has no sheet {sheet!r}; its sheets are "
                                     f"{', '.join(map(repr, sheets))}{hint}")
        if isinstance(sheet, int) and not 0 <= sheet < len(sheets):
            raise ClinicalTableError(f"clinical table {path} has no sheet number {sheet} (counted from 0); its "
                                     f"{len(sheets)} sheets are {', '.join(map(repr, sheets))}")
        raw = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, dtype=object, header=None)
    elif suffix in (".csv", ".tsv", ".txt"):
        raw = pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False, header=None,
                          encoding="utf-8-sig")
    else:
        raise ValueError(f"clinical table {path} must be .csv, .tsv or .xlsx, not {suffix!r}")
    if raw.empty:
        raise ClinicalTableError(f"clinical table {path} is empty: expected a header row and one row per patient")
    header = [_header_name(value, position) for position, value in enumerate(raw.iloc[0].tolist(), start=1)]
    positions: dict[str, list[int]] = {}
    for position, name in enumerate(header, start=1):
        positions.setdefault(name, []).append(position)
    duplicated = {name: where for name, where in positions.items() if len(where) > 1}
    if duplicated:
        described = "; ".join(f"{name!r} is the name of columns {', '.join(map(str, where))}"
                              for name, where in duplicated.items())
        raise ClinicalTableError(f"clinical table {path}: {described}; rename or delete all but one of them "
                                 "(a duplicated header makes it ambiguous which column holds the field)")
    frame = raw.iloc[1:].reset_index(drop=True)
    frame.columns = header
    return frame


def _header_name(value: Any, position: int) -> str:
    """A header cell as a column name: trimmed, without a byte-order mark; an empty cell is ``unnamed_<k>``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"unnamed_{position}"
    text = str(value).replace("\ufeff", "").strip()
    return text or f"unnamed_{position}"


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in ("", "na", "nan", "n/a", "none", "null", "-")


def _as_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


class CensoredValue(ValueError):
    """A lab value given as a bound (``<20``, ``>1000``) rather than a number."""

    def __init__(self, text: str, limit: float):
        super().__init__(text)
        self.limit = limit


_GROUPED = re.compile(r"^\d{1,3}(?:[,. \u00a0\u202f]\d{3})+$")
_CENSORED = re.compile(r"^(<=|>=|<|>|\u2264|\u2265)\s*(.+)$")
#: Follow-up longer than this (months) is implausible and refused; longer than the warning limit is flagged.
MAX_PFS_MONTHS = 1200.0
#: The largest plausible serum AFP (ng/mL); HCC values above 1e6 are rare, above 1e7 a unit or typing error.
MAX_AFP_NG_ML = 1e7
WARN_PFS_MONTHS = 240.0


#: Words Python's float() reads as numbers that no measurement is.
_NOT_NUMBERS = ("nan", "inf", "infinity")


def _refuse_unusual_number_text(text: str) -> None:
    """A ValueError for text that Python's ``float()`` would read but that is no typed measurement: NaN or
    infinity, digits other than ASCII 0-9 (full-width ``５２０``, Arabic-Indic), or ``_`` between digits."""
    if text.lstrip("+-").strip().lower() in _NOT_NUMBERS:
        raise ValueError(f"{text!r} is not a number")
    if not text.isascii():
        raise ValueError(f"{text!r} holds characters other than the digits 0-9, a sign and separators; type the "
                         "number with the digits 0-9")
    if "_" in text:
        raise ValueError(f"{text!r}: '_' is not a digit separator; write {text.replace('_', '')!r}")


def parse_number(value: Any) -> float:
    """A finite number from a table cell (see :func:`_parse_number` for the rules); a text whose number is too
    large for a float (a hundred thousand digits) is refused, not read as infinity."""
    number = _parse_number(value)
    if not math.isfinite(number):
        raise ValueError(f"{_shown(str(value).strip())} is too large to be a measurement")
    return number


def _shown(text: str, limit: int = 24) -> str:
    """A typed text for a message, quoted; a long one cut, with its length."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def _parse_number(value: Any) -> float:
    """A number from a table cell, by a stated rule for separators (docs/manifest.md, "Numbers").

    - A cell the spreadsheet already holds as a number is taken as it is.
    - Spaces between digit groups are thousands separators: ``1 234`` is 1234.
    - With both ``.`` and ``,``, the last one is the decimal mark and the other must group thousands:
      ``1,234.5`` and ``1.234,5`` are both 1234.5.
    - A separator that appears more than once groups thousands: ``1,234,567`` and ``1.234.567``.
    - A single ``.`` or ``,`` is a decimal mark (``12.5`` and ``12,5`` are 12.5), except when exactly three digits
      follow it and one to three digits (not a lone 0) precede it: ``1,234`` and ``1.234`` could be 1234 or 1.234
      and are refused as ambiguous, in the clinical table, ``hccrad predict`` and the web app alike.
    - A bound such as ``<20`` raises :class:`CensoredValue`.
    - NaN, infinity, a value too large for a float, digits other than ASCII 0-9 and ``_`` are refused, though
      Python's ``float()`` reads them.

    Raises
    ------
    ValueError
        With a message saying why, when the text is not a number by these rules.
    """
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    _refuse_unusual_number_text(text)
    censored = _CENSORED.match(text)
    if censored:
        raise CensoredValue(text, _parse_number(censored.group(2)))
    if not text:
        raise ValueError("empty text is not a number")
    sign = ""
    if text[0] in "+-":
        sign, text = text[0], text[1:].strip()
    digits_only = re.sub(r"[.,\s\u00a0\u202f]", "", text)
    if not digits_only.isdigit():
        number = float(sign + text)  # scientific notation, or a ValueError naming the text
        if not math.isfinite(number):
            raise ValueError(f"{_shown(text)} is too large to be a measurement")
        return number
    spaces = re.findall(r"[\s\u00a0\u202f]", text)
    commas, dots = text.count(","), text.count(".")
    if spaces:
        whole, fraction = (re.split(r"[.,]", text) if commas + dots == 1 else (text, ""))
        if commas + dots > 1 or not _GROUPED.match(whole):
            raise ValueError(f"{text!r}: spaces must group thousands in threes")
        return float(sign + re.sub(r"[\s\u00a0\u202f]", "", whole) + ("." + fraction if fraction else ""))
    if commas and dots:
        decimal = "," if text.rfind(",") > text.rfind(".") else "."
        grouping = "." if decimal == "," else ","
        whole, fraction = text.rsplit(decimal, 1)
        if text.count(decimal) > 1 or not _GROUPED.match(whole) or grouping not in whole:
            raise ValueError(f"{text!r}: mixes '.' and ',' without grouping thousands in threes")
        return float(sign + whole.replace(grouping, "") + "." + fraction)
    separator = "," if commas else "." if dots else None
    count = commas or dots
    if separator is None:
        return float(sign + text)
    if count > 1:
        if not _GROUPED.match(text):
            raise ValueError(f"{text!r}: repeated {separator!r} must group thousands in threes")
        return float(sign + text.replace(separator, ""))
    whole, fraction = text.split(separator)
    if len(fraction) == 3 and 1 <= len(whole) <= 3 and whole != "0":
        mark = "comma" if separator == "," else "point"
        raise ValueError(f"{text!r} is ambiguous: {whole}{fraction} with a thousands separator, or "
                         f"{whole}.{fraction} with a decimal {mark}; write it without the separator, or with more "
                         f"or fewer decimals ({whole}.{fraction}0)")
    return float(sign + whole + "." + fraction)


def normalize_bclc(value: str) -> str | None:
    """Map spellings such as ``Stage-A``, ``bclc b`` or ``0`` onto the stages 0/A/B/C/D."""
    token = re.sub(r"(?i)bclc|stage|[\s\-_:]", "", value).upper()
    if token in ("O", "ZERO"):
        token = "0"
    return token if token in BCLC_STAGES else None


def normalize_child_pugh(value: Any) -> tuple[str | None, int | None]:
    """Return (grade, score) from a grade letter (``A``, ``Child-Pugh B``) or a score 5-15."""
    text = _as_text(value)
    try:
        number = float(text)
    except ValueError:
        token = re.sub(r"(?i)child|pugh|grade|class|[\s\-_:]", "", text).upper()
        return (token, None) if token in CHILD_PUGH_GRADES else (None, None)
    if not number.is_integer() or not 5 <= number <= 15:
        return None, None
    score = int(number)
    grade = "A" if score <= 6 else "B" if score <= 9 else "C"
    return grade, score


def _typing_problem(value: Any) -> str | None:
    """Why typed text is no number (NaN, infinity, other digits than 0-9, ``_``), or None. A typed "NaN" is
    refused rather than read as blank: it would be imputed and scored like a typical value without a word."""
    if not isinstance(value, str):
        return None
    try:
        _refuse_unusual_number_text(value.strip())
    except ValueError as exc:
        return str(exc)
    return None


def parse_clinical_inputs(values: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """One new patient's clinical factors read by the manifest's rules, for ``hccrad predict``.

    Parameters
    ----------
    values
        Raw ``afp`` (ng/mL), ``child_pugh`` (grade or score 5-15), ``bclc`` and ``treatment``; blanks are missing.

    Returns
    -------
    (clean, errors, unreadable)
        ``clean`` has canonical values (None where missing or not readable). ``errors`` are refused whatever the
        options (a negative AFP, a bound such as ``<20``); ``unreadable`` are values that could not be read,
        which ``--allow-impute`` turns into missing values.
    """
    clean: dict[str, Any] = {name: None for name in ("afp", "child_pugh", "child_pugh_score", "bclc", "treatment")}
    errors: list[str] = []
    unreadable: list[str] = []
    afp = values.get("afp")
    typed = _typing_problem(afp)
    if typed:  # a typo, not an unknown value: refused whatever the options, never imputed
        errors.append(f"afp {typed}; give the value in ng/mL with the digits 0-9, or leave it empty if it is "
                      "unknown")
    elif not _blank(afp):
        try:
            number = parse_number(afp)
        except CensoredValue:
            errors.append(f"afp {_shown(_as_text(afp))} is a bound, not a value; give a number in ng/mL")
        except ValueError as exc:
            unreadable.append(f"afp {_shown(_as_text(afp))} is not a number in ng/mL ({exc})")
        else:
            if not math.isfinite(number) or number < 0:
                errors.append(f"afp {number:g} is not a concentration; expected a number >= 0 (ng/mL)")
            elif number > MAX_AFP_NG_ML:
                errors.append(f"afp {number:g} ng/mL is above the plausible maximum of {MAX_AFP_NG_ML:g} ng/mL; "
                              "check the value and its unit")
            else:
                clean["afp"] = number + 0.0  # -0 is 0
    child_pugh = values.get("child_pugh")
    if not _blank(child_pugh):
        grade, score = normalize_child_pugh(child_pugh)
        if grade is None:
            unreadable.append(f"child_pugh {_as_text(child_pugh)!r} is not a grade A, B, C or a score 5-15")
        clean["child_pugh"], clean["child_pugh_score"] = grade, score
    bclc = values.get("bclc")
    if not _blank(bclc):
        stage = normalize_bclc(_as_text(bclc))
        if stage is None:
            unreadable.append(f"bclc {_as_text(bclc)!r} is not one of 0, A, B, C, D")
        clean["bclc"] = stage
    treatment = values.get("treatment")
    if not _blank(treatment):
        clean["treatment"] = _as_text(treatment)
    return clean, errors, unreadable


def closest_columns(name: str, columns: list[str], n: int = 3) -> list[str]:
    """The table's column names closest to ``name`` (same name in another case first, then difflib's ratio)."""
    same_case = [column for column in columns if column.casefold() == name.casefold()]
    folded = {column.casefold(): column for column in columns}
    close = difflib.get_close_matches(name.casefold(), list(folded), n=n, cutoff=0.5)
    return list(dict.fromkeys(same_case + [folded[c] for c in close]))[:n]
