"""Code checks for the terminologies a record may cite.

ICD-10-CM against the full CMS code list (`simple-icd-10-cm`); SNOMED CT and LOINC have no
free full release here, so their identifiers are checked by structure and check digit
(SNOMED: partition identifier + Verhoeff; LOINC: mod-10), which catches typos and
transpositions. Systems other than these three are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import simple_icd_10_cm as icd10cm

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"

_VERHOEFF_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6], [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_VERHOEFF_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2], [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]
# SNOMED CT partition identifiers (digits 2-3 from the right): short-format concept,
# description, relationship, and the long-format (extension namespace) ones.
_SNOMED_PARTITIONS = {"00", "01", "02", "10", "11", "12"}
# Plain LOINC codes carry a mod-10 check digit; answer (LA), part (LP), group (LG) and
# answer-list (LL) codes use another suffix scheme, so only their format is checked.
_LOINC = re.compile(r"^(L[APGL])?(\d{1,7})-(\d)$")
_SNOMED_ID = re.compile(r"\d+")
# SNOMED CT compositional grammar (post-coordinated expressions): ids joined by : = , { } +
_SNOMED_EXPRESSION = re.compile(r"^[\d\s:=,{}+|A-Za-z()\-'.]+$")


def verhoeff_valid(digits: str) -> bool:
    check = 0
    for i, ch in enumerate(reversed(digits)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[i % 8][int(ch)]]
    return check == 0


def snomed_error(code: str) -> str | None:
    """Why `code` is not a well-formed SNOMED CT id or expression (every id checked)."""
    if not code.isdigit() and any(c in code for c in ":=+") and _SNOMED_EXPRESSION.match(code):
        # Terms between pipes are free text; only the ids carry check digits.
        ids = _SNOMED_ID.findall(re.sub(r"\|[^|]*\|", "", code))
        for sctid in ids:
            problem = snomed_id_error(sctid)
            if problem is not None:
                return f"{sctid}: {problem}"
        return None if ids else "expression without concept ids"
    return snomed_id_error(code)


def snomed_id_error(code: str) -> str | None:
    if not (code.isascii() and code.isdigit()) or not 6 <= len(code) <= 18 or code[0] == "0":
        return "a SNOMED CT id is 6 to 18 digits without a leading zero"
    if code[-3:-1] not in _SNOMED_PARTITIONS:
        return f"partition identifier {code[-3:-1]!r} is not a SNOMED CT partition"
    if not verhoeff_valid(code):
        return "Verhoeff check digit does not match"
    return None


def loinc_check_digit(number: str) -> int:
    """LOINC's mod-10 check digit (Luhn over the code number)."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def loinc_error(code: str) -> str | None:
    match = _LOINC.match(code)
    if match is None:
        return ("a LOINC code is NNNNN-C or LA/LP/LG/LL + NNNNN-C (up to 7 digits, a dash, "
                "a check digit)")
    if match.group(1) is None and loinc_check_digit(match.group(2)) != int(match.group(3)):
        return "mod-10 check digit does not match"
    return None


def icd10cm_error(code: str) -> str | None:
    if not icd10cm.is_valid_item(code):
        return "not in the ICD-10-CM code list"
    return None


_CHECKS = {ICD10CM: icd10cm_error, SNOMED: snomed_error, LOINC: loinc_error}


def iter_codings(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Coding-shaped object (has `system` and `code`) in a resource, with its path."""
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and isinstance(node.get("code"), str):
            yield path, node
        for key, value in node.items():
            yield from iter_codings(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from iter_codings(value, f"{path}[{i}]")


def coding_errors(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, message) for every ICD-10-CM / SNOMED CT / LOINC code that fails its check."""
    errors = []
    for path, coding in iter_codings(resource):
        check = _CHECKS.get(coding["system"])
        if check is None:
            continue
        problem = check(coding["code"])
        if problem is not None:
            errors.append((path, f"{coding['system']} code {coding['code']!r}: {problem}"))
    return errors
