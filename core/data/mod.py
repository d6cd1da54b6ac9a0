"""Loading MOD (DSTC10 Track 1, Chinese) stickers and dialogues, building samples and splits.

Data layout (a MOD data directory)::

    img2id.json      file name -> sticker id ("000".."306", leading zeros)
    ocr.json         optional; id without leading zeros -> {"ocr": text, "name": file name}
    stickers/        the sticker image files
    dialogues.json   {"dialogue 1": [{"speaker_id": "[speaker1]", "img_id": "137",
                                      "txt": "...", "emotion_id": 3}, ...], ...}
    emotion_dict.json  optional; emotion name <-> id

Samples follow the paper: every sticker turn after the first turn of a dialogue is
a sample whose context is all turns up to and including that turn's text and whose
target is that turn's sticker.

Known quirks of the public data, handled by general rules (nothing keyed on ids):

* sticker 112 (得意.gif) has no image: it is a :class:`Sticker` with
  ``image_path=None``; :meth:`StickerSet.ids_with_image` (the candidate set)
  leaves it out and samples whose gold sticker it is are skipped and counted
  under ``"sticker_without_image"``.
* the official map's ``.DS_Store`` entry for id 037 (already fixed in the data
  here) would be treated as "no image file"; the name label then comes from
  ``ocr.json``.

Problems never vanish silently: each is either raised (``on_error="raise"``) as a
:class:`DataError` naming the file and dialogue, or counted by reason in a
:class:`LoadReport` and logged (``on_error="skip"``).
"""

from __future__ import annotations

import functools
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # datasets is imported lazily (slow import)
    from datasets import DatasetDict

__all__ = [
    "DataError",
    "LoadReport",
    "ModData",
    "SAMPLE_COLUMNS",
    "SPLIT_NAMES",
    "SplitInfo",
    "Sticker",
    "StickerSet",
    "Turn",
    "UnknownStickerError",
    "UnknownStickerInDataError",
    "build_samples",
    "convert_dialogue_ids",
    "early_release_to_official",
    "load_dialogues",
    "load_emotion_dict",
    "load_mod",
    "load_stickers",
    "name_label_from_file",
    "normalize_sticker_id",
    "samples_from_file",
    "split_samples",
]

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
SPLIT_NAMES: tuple[str, ...] = ("train", "valid", "valid_hard", "easy_test", "hard_test")
STICKER_NUMBERINGS: tuple[str, ...] = ("official", "early-release")
SAMPLE_COLUMNS: tuple[str, ...] = (
    "sample_id", "dialogue_id", "turn_index", "speakers", "texts", "sticker_id", "emotion_id",
)
STICKERS_DIR = "stickers"
IMG2ID_FILE = "img2id.json"
OCR_FILE = "ocr.json"
DIALOGUES_FILE = "dialogues.json"
EMOTION_DICT_FILE = "emotion_dict.json"
ID_WIDTH = 3


# --------------------------------------------------------------------------- errors / report


class DataError(ValueError):
    """The data is malformed; the message names the file (and dialogue/turn when known)."""


class UnknownStickerError(KeyError):
    """A sticker id that is not in the sticker set (or is not an id at all)."""

    def __init__(self, sticker_id: object, where: str | None = None) -> None:
        self.sticker_id = sticker_id
        self.where = where
        message = f"unknown sticker id {sticker_id!r}"
        super().__init__(f"{where}: {message}" if where else message)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class UnknownStickerInDataError(DataError, UnknownStickerError):
    """Unknown sticker id met while loading a data file: both a DataError and an UnknownStickerError."""

    def __init__(self, message: str, sticker_id: object) -> None:
        self.sticker_id = sticker_id
        self.where = None
        Exception.__init__(self, message)


@dataclass
class LoadReport:
    """What loading saw: dialogue/sample counts and every skipped or suspicious item by reason."""

    dialogues: int = 0
    samples: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    def note(self, reason: str, message: str, *, level: int = logging.WARNING) -> None:
        """Count one item under ``reason``, keep ``message`` and log it."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.messages.append(message)
        logger.log(level, message)

    def merge(self, other: LoadReport) -> None:
        """Add the counts and messages of ``other`` to this report."""
        self.dialogues += other.dialogues
        self.samples += other.samples
        for reason, count in other.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        self.messages.extend(other.messages)

    def summary(self) -> str:
        """One-line human-readable summary."""
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none"
        return f"{self.dialogues} dialogues, {self.samples} samples; skipped/noted: {skipped}"


def _problem(report: LoadReport, on_error: OnError, reason: str, message: str,
             error: DataError | None = None) -> None:
    """Raise ``error`` (default: DataError(message)) or count ``message`` in ``report``."""
    if on_error == "raise":
        raise error if error is not None else DataError(message)
    report.note(reason, message)


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


# --------------------------------------------------------------------------- stickers


def normalize_sticker_id(value: object) -> str:
    """Zero-padded sticker id: ``37``, ``"37"`` and ``"037"`` all give ``"037"``.

    Raises:
        UnknownStickerError: ``value`` is not a non-negative integer or digit string.
    """
    if isinstance(value, bool):
        raise UnknownStickerError(value)
    if isinstance(value, int):
        if value < 0:
            raise UnknownStickerError(value)
        return str(value).zfill(ID_WIDTH)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return str(int(value.strip())).zfill(ID_WIDTH)
    raise UnknownStickerError(value)


_TRAILING_DIGITS = re.compile(r"\d+$")


def name_label_from_file(file_name: str | None) -> str:
    """File name minus extension and trailing digits: ``"好困2.gif"`` -> ``"好困"``.

    A name made only of digits (``"666.gif"``, ``"1002.jpeg"``) is kept whole.
    """
    if not file_name:
        return ""
    stem = Path(file_name).stem
    stripped = _TRAILING_DIGITS.sub("", stem)
    return stripped or stem


@dataclass(frozen=True)
class Sticker:
    """One sticker: id, image file (may be missing), OCR text and name label."""

    sticker_id: str  # zero-padded "000".."306"
    file_name: str | None
    image_path: Path | None
    ocr: str
    name_label: str  # file name minus extension and trailing digits

    @property
    def has_image(self) -> bool:
        """True when the sticker's image file exists."""
        return self.image_path is not None


class StickerSet:
    """Ordered mapping sticker id -> :class:`Sticker` (ids sorted numerically).

    Lookups accept ``"37"``, ``"037"`` or ``37``. ``report`` holds what loading
    noted (missing image files, unmapped files, ...).
    """

    def __init__(self, stickers: Iterable[Sticker], report: LoadReport | None = None) -> None:
        items = sorted(stickers, key=lambda s: int(s.sticker_id))
        self._by_id: dict[str, Sticker] = {}
        for sticker in items:
            if sticker.sticker_id in self._by_id:
                raise DataError(f"duplicate sticker id {sticker.sticker_id!r}")
            self._by_id[sticker.sticker_id] = sticker
        self.report = report or LoadReport()

    @staticmethod
    def normalize_id(value: object) -> str:
        """See :func:`normalize_sticker_id`."""
        return normalize_sticker_id(value)

    def __getitem__(self, sticker_id: object) -> Sticker:
        key = normalize_sticker_id(sticker_id)
        try:
            return self._by_id[key]
        except KeyError:
            raise UnknownStickerError(sticker_id) from None

    def get(self, sticker_id: object, default: Sticker | None = None) -> Sticker | None:
        """Sticker for ``sticker_id`` or ``default``."""
        try:
            return self[sticker_id]
        except UnknownStickerError:
            return default

    def __contains__(self, sticker_id: object) -> bool:
        try:
            return normalize_sticker_id(sticker_id) in self._by_id
        except UnknownStickerError:
            return False

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Sticker]:
        return iter(self._by_id.values())

    def __repr__(self) -> str:
        return f"StickerSet({len(self)} stickers, {len(self.ids_with_image())} with image)"

    @property
    def ids(self) -> list[str]:
        """All sticker ids, in numeric order."""
        return list(self._by_id)

    def ids_with_image(self) -> list[str]:
        """Ids of stickers that have an image: the candidate set for ranking."""
        return [sid for sid, s in self._by_id.items() if s.has_image]


def _read_json(path: Path, what: str) -> Any:
    """Parse a JSON file; DataError names the file (and line/column when malformed)."""
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read {what} file ({exc})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from exc


def _read_img2id(path: Path) -> dict[str, str]:
    """id -> file name from ``img2id.json`` (file name -> id)."""
    raw = _read_json(path, "sticker map")
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object mapping file name -> sticker id")
    by_id: dict[str, str] = {}
    for file_name, raw_id in raw.items():
        try:
            sid = normalize_sticker_id(raw_id)
        except UnknownStickerError as exc:
            raise DataError(f"{path}: file {file_name!r} has invalid sticker id {raw_id!r}") from exc
        if sid in by_id:
            raise DataError(f"{path}: sticker id {sid} given to both {by_id[sid]!r} and {file_name!r}")
        by_id[sid] = file_name
    return by_id


def _read_ocr(path: Path) -> dict[str, dict[str, str]]:
    """id -> {"ocr", "name"} from the optional ``ocr.json``; empty when absent."""
    if not path.is_file():
        return {}
    raw = _read_json(path, "OCR")
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object mapping sticker id -> {{ocr, name}}")
    out: dict[str, dict[str, str]] = {}
    for raw_id, entry in raw.items():
        try:
            sid = normalize_sticker_id(raw_id)
        except UnknownStickerError as exc:
            raise DataError(f"{path}: invalid sticker id {raw_id!r}") from exc
        if isinstance(entry, str):
            entry = {"ocr": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("ocr", ""), str):
            raise DataError(f"{path}: sticker {raw_id!r}: expected {{'ocr': str, 'name': str}}")
        out[sid] = {"ocr": entry.get("ocr", "") or "", "name": entry.get("name") or ""}
    return out


def _make_sticker(sid: str, file_name: str, image_dir: Path, ocr: Mapping[str, str],
                  report: LoadReport) -> Sticker:
    """Build one Sticker, noting a missing image file in ``report``."""
    usable_name = file_name if file_name and not file_name.startswith(".") else None
    image_path = image_dir / usable_name if usable_name else None
    if image_path is None or not image_path.is_file():
        report.note("missing_image_file",
                    f"{image_dir}: sticker {sid} maps to {file_name!r}, which has no image file; "
                    "kept without image (left out of candidate sets)")
        image_path = None
    label = name_label_from_file(usable_name) or name_label_from_file(ocr.get("name"))
    return Sticker(sid, usable_name, image_path, ocr.get("ocr", "").strip(), label)


def load_stickers(data_dir: str | Path) -> StickerSet:
    """Load the sticker set of a MOD data directory.

    Reads ``img2id.json`` (required), ``ocr.json`` (optional) and lists
    ``stickers/``. A map entry without an image file gives a sticker with
    ``image_path=None`` (noted as ``"missing_image_file"``); an image file in
    no map is noted as ``"unmapped_image_file"``; an OCR entry for an id not in
    the map as ``"ocr_without_map"``. The notes are in ``StickerSet.report``.
    """
    data_dir = Path(data_dir)
    by_id = _read_img2id(data_dir / IMG2ID_FILE)
    ocr = _read_ocr(data_dir / OCR_FILE)
    image_dir = data_dir / STICKERS_DIR
    report = LoadReport()
    if not image_dir.is_dir():
        report.note("missing_image_dir", f"{image_dir}: sticker image folder not found")
    stickers = [_make_sticker(sid, name, image_dir, ocr.get(sid, {}), report)
                for sid, name in by_id.items()]
    for sid in sorted(set(ocr) - set(by_id)):
        report.note("ocr_without_map",
                    f"{data_dir / OCR_FILE}: OCR entry for sticker {sid} which is not in {IMG2ID_FILE}")
    if image_dir.is_dir():
        mapped = set(by_id.values())
        for path in sorted(image_dir.iterdir()):
            if path.is_file() and not path.name.startswith(".") and path.name not in mapped:
                report.note("unmapped_image_file",
                            f"{path}: image file is in no entry of {IMG2ID_FILE}; ignored")
    return StickerSet(stickers, report)


# --------------------------------------------------------------------------- dialogues


@dataclass
class Turn:
    """One dialogue turn; ``sticker_id`` is zero-padded when the turn sends a sticker."""

    speaker: str
    text: str
    sticker_id: str | None = None
    emotion_id: int | None = None


def _parse_sticker(raw: object, stickers: StickerSet, where: str, report: LoadReport,
                   on_error: OnError) -> str | None:
    """Zero-padded known sticker id of a turn, or None (unknown ids are raised or noted)."""
    if raw is None:
        return None
    if raw not in stickers:
        _problem(report, on_error, "unknown_sticker",
                 f"{where}: unknown sticker id {raw!r}; turn text kept, sticker dropped",
                 UnknownStickerInDataError(f"{where}: unknown sticker id {raw!r}", raw))
        return None
    return normalize_sticker_id(raw)


def _parse_emotion(raw: object, where: str, report: LoadReport, on_error: OnError) -> int | None:
    """Integer emotion id of a turn, or None (invalid values are raised or noted)."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        _problem(report, on_error, "bad_emotion_id",
                 f"{where}: emotion_id must be a non-negative integer, got {raw!r}; ignored")
        return None
    return raw


def _parse_turn(raw: object, stickers: StickerSet, where: str, report: LoadReport,
                on_error: OnError) -> Turn | None:
    """One raw turn -> Turn, or None when the turn is skipped."""
    if not isinstance(raw, dict):
        _problem(report, on_error, "bad_turn", f"{where}: turn must be an object, got {type(raw).__name__}")
        return None
    speaker, text = raw.get("speaker_id"), raw.get("txt")
    if not isinstance(speaker, str) or not speaker.strip():
        _problem(report, on_error, "bad_turn", f"{where}: speaker_id must be a non-empty string, got {speaker!r}")
        return None
    if not isinstance(text, str):
        _problem(report, on_error, "bad_turn", f"{where}: txt must be a string, got {text!r}")
        return None
    if not text.strip():
        _problem(report, on_error, "empty_text", f"{where}: empty turn text; turn skipped")
        return None
    sticker_id = _parse_sticker(raw.get("img_id"), stickers, where, report, on_error)
    emotion_id = _parse_emotion(raw.get("emotion_id"), where, report, on_error)
    return Turn(speaker.strip(), text.strip(), sticker_id, emotion_id)


def _parse_dialogue(key: str, raw: object, stickers: StickerSet, path: Path, report: LoadReport,
                    on_error: OnError) -> list[Turn] | None:
    """One raw dialogue -> list of turns, or None when the dialogue is skipped."""
    where = f"{path}: dialogue {key!r}"
    if not isinstance(raw, list):
        _problem(report, on_error, "bad_dialogue", f"{where}: expected a list of turns, got {type(raw).__name__}")
        return None
    turns = [_parse_turn(t, stickers, f"{where}, turn {i}", report, on_error) for i, t in enumerate(raw)]
    kept = [t for t in turns if t is not None]
    if not kept:
        _problem(report, on_error, "empty_dialogue", f"{where}: no usable turns; dialogue skipped")
        return None
    return kept


# The early MOD release (github.com/feizc/Dialogue-System data/data.json) numbers stickers with its own
# map: the official order without the two stickers that have no public image (037, 112), so every later
# id is shifted. (first early id, last early id, shift to the official id); see the data README.
EARLY_RELEASE_SHIFTS: tuple[tuple[int, int, int], ...] = ((0, 36, 0), (37, 110, 1), (111, 271, 2))


def early_release_to_official(value: object) -> str:
    """Official sticker id of an early-release id: ``"036"`` -> ``"036"``, ``"037"`` -> ``"038"``,
    ``"111"`` -> ``"113"``. Raises :class:`UnknownStickerError` for an id the early release never had."""
    early = int(normalize_sticker_id(value))
    for first, last, shift in EARLY_RELEASE_SHIFTS:
        if first <= early <= last:
            return normalize_sticker_id(early + shift)
    raise UnknownStickerError(value, f"the early release's numbering (ids 000-{EARLY_RELEASE_SHIFTS[-1][1]:03d})")


def _check_numbering(sticker_ids: str) -> None:
    if sticker_ids not in STICKER_NUMBERINGS:
        raise ValueError(f"sticker_ids={sticker_ids!r}; expected one of {STICKER_NUMBERINGS}")


def convert_dialogue_ids(raw: Mapping[str, Any], sticker_ids: str = "early-release",
                         source: str = "dialogues") -> dict[str, Any]:
    """A dialogues file's JSON (official DSTC10 raw format) with every ``img_id`` in the official numbering.

    ``sticker_ids="official"`` returns a copy unchanged. Keys and turns keep their order; an id the
    numbering does not have raises :class:`UnknownStickerInDataError` naming ``source``, dialogue and turn.
    """
    _check_numbering(sticker_ids)
    if sticker_ids == "official":
        return {key: list(value) if isinstance(value, list) else value for key, value in raw.items()}
    return {key: _early_turns(key, value, Path(source), LoadReport(), "raise") for key, value in raw.items()}


def _early_turns(key: str, turns: object, path: Path, report: LoadReport, on_error: OnError) -> object:
    """One dialogue's turns with early-release sticker ids made official (an id the early release
    cannot have becomes the problem ``unknown_sticker``; the turn keeps its text)."""
    if not isinstance(turns, list):
        return turns
    converted = []
    for index, turn in enumerate(turns):
        if isinstance(turn, dict) and turn.get("img_id") not in (None, ""):
            turn = dict(turn)
            try:
                turn["img_id"] = early_release_to_official(turn["img_id"])
            except UnknownStickerError:
                where = f"{path}, dialogue {key!r}, turn {index}"
                if on_error == "raise":
                    raise UnknownStickerInDataError(
                        f"{where}: sticker id {turn['img_id']!r} does not exist in the early release's numbering",
                        turn["img_id"]) from None
                report.note("unknown_sticker", f"{where}: early-release sticker id {turn['img_id']!r} "
                            "does not exist; turn kept without its sticker")
                turn.pop("img_id")
        converted.append(turn)
    return converted


def load_dialogues(path: str | Path, stickers: StickerSet, *, on_error: OnError = "raise",
                   sticker_ids: str = "official") -> tuple[dict[str, list[Turn]], LoadReport]:
    """Read a dialogues file in the official DSTC10 raw format.

    Args:
        path: JSON file ``{"dialogue 1": [{"speaker_id", "txt", "img_id"?, "emotion_id"?}, ...]}``.
        stickers: the sticker set used to validate ``img_id``.
        on_error: ``"raise"`` raises :class:`DataError` (an unknown sticker id
            raises :class:`UnknownStickerInDataError`, also an
            :class:`UnknownStickerError`) naming the file, dialogue and turn;
            ``"skip"`` counts the item in the report and logs it. A turn with an
            unknown sticker keeps its text and loses the sticker; a turn with
            empty text or wrong types is dropped (later turn indices shift).
        sticker_ids: the file's sticker numbering: ``"official"`` (``img2id.json``'s, the
            paper's) or ``"early-release"`` (github.com/feizc/Dialogue-System ``data/data.json``,
            converted with :func:`early_release_to_official`; an id it cannot have is an unknown sticker).

    Returns:
        (dialogue id -> turns, report). Malformed JSON always raises
        :class:`DataError` naming the file, line and column.
    """
    _check_on_error(on_error)
    _check_numbering(sticker_ids)
    path = Path(path)
    raw = _read_json(path, "dialogues")
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object mapping dialogue id -> list of turns, "
                        f"got {type(raw).__name__}")
    report = LoadReport()
    if sticker_ids != "official":
        raw = {key: _early_turns(key, value, path, report, on_error) for key, value in raw.items()}
    dialogues: dict[str, list[Turn]] = {}
    for key, value in raw.items():
        turns = _parse_dialogue(key, value, stickers, path, report, on_error)
        if turns is not None:
            dialogues[key] = turns
    report.dialogues = len(dialogues)
    return dialogues, report


# --------------------------------------------------------------------------- samples


def build_samples(dialogues: Mapping[str, Sequence[Turn]], stickers: StickerSet,
                  report: LoadReport | None = None) -> list[dict[str, Any]]:
    """Samples as in the paper: every sticker turn after a dialogue's first turn.

    Context = all turns up to and including the sticker turn's text; target = its
    sticker. Sticker turns at index 0 are counted as ``"first_turn_sticker"``
    (not an error: the paper's definition); a gold sticker without image as
    ``"sticker_without_image"``; a sticker id not in ``stickers`` as
    ``"unknown_sticker"``. ``report.samples`` is increased by the number built.
    """
    report = report if report is not None else LoadReport()
    samples: list[dict[str, Any]] = []
    for dialogue_id, turns in dialogues.items():
        for index, turn in enumerate(turns):
            if turn.sticker_id is None:
                continue
            where = f"dialogue {dialogue_id!r}, turn {index}"
            if index == 0:
                report.note("first_turn_sticker", f"{where}: sticker on the first turn is not a sample",
                            level=logging.DEBUG)
                continue
            sticker = stickers.get(turn.sticker_id)
            if sticker is None:
                report.note("unknown_sticker", f"{where}: unknown sticker id {turn.sticker_id!r}; sample skipped")
                continue
            if not sticker.has_image:
                report.note("sticker_without_image",
                            f"{where}: gold sticker {sticker.sticker_id} ({sticker.file_name or 'no file'}) "
                            "has no image; sample skipped", level=logging.INFO)
                continue
            samples.append(_make_sample(dialogue_id, turns, index, sticker.sticker_id))
    report.samples += len(samples)
    return samples


def _make_sample(dialogue_id: str, turns: Sequence[Turn], index: int, sticker_id: str) -> dict[str, Any]:
    """Sample dict for the sticker turn ``turns[index]``."""
    context = turns[: index + 1]
    emotion = turns[index].emotion_id
    return {
        "sample_id": f"{dialogue_id}#{index}",
        "dialogue_id": dialogue_id,
        "turn_index": index,
        "speakers": [t.speaker for t in context],
        "texts": [t.text for t in context],
        "sticker_id": sticker_id,
        "emotion_id": -1 if emotion is None else int(emotion),
    }


def samples_from_file(path: str | Path, stickers: StickerSet, on_error: OnError = "skip",
                      sticker_ids: str = "official") -> list[dict[str, Any]]:
    """Dialogues file -> sample dicts (e.g. to score an arbitrary dialogue file)."""
    dialogues, report = load_dialogues(path, stickers, on_error=on_error, sticker_ids=sticker_ids)
    samples = build_samples(dialogues, stickers, report)
    logger.info("%s: %s", path, report.summary())
    return samples


def load_emotion_dict(path: str | Path) -> list[str]:
    """Emotion names indexed by emotion id, from an official-style ``emotion_dict.json``.

    Accepts ``{name: id}``, ``{id: name}`` (ids as ints or digit strings) or a
    list of names. Gaps in the ids are filled with ``"emotion_<id>"`` (logged);
    a duplicated id raises :class:`DataError`.
    """
    path = Path(path)
    raw = _read_json(path, "emotion dictionary")
    if isinstance(raw, list) and all(isinstance(n, str) for n in raw):
        return list(raw)
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path}: expected a non-empty object {{name: id}} or {{id: name}}")
    pairs = [_emotion_pair(k, v, path) for k, v in raw.items()]
    by_id: dict[int, str] = {}
    for eid, name in pairs:
        if eid in by_id:
            raise DataError(f"{path}: emotion id {eid} given to both {by_id[eid]!r} and {name!r}")
        by_id[eid] = name
    names = [by_id.get(i, f"emotion_{i}") for i in range(max(by_id) + 1)]
    if len(by_id) != len(names):
        logger.warning("%s: emotion ids are not contiguous; %d gaps filled", path, len(names) - len(by_id))
    return names


def _emotion_pair(key: str, value: object, path: Path) -> tuple[int, str]:
    """(id, name) from one emotion_dict entry in either orientation."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, key
    if isinstance(value, str) and key.strip().isdigit():
        return int(key), value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value), key
    raise DataError(f"{path}: cannot read emotion entry {key!r}: {value!r}")


# --------------------------------------------------------------------------- splits


@dataclass
class SplitInfo:
    """How :func:`split_samples` split the data."""

    seed: int
    held_out: list[str]            # the hard test's stickers
    counts: dict[str, int]
    dialogues: dict[str, int]
    dropped: dict[str, int]
    fractions: dict[str, float]
    held_out_valid: list[str] = field(default_factory=list)  # valid_hard's stickers

    @property
    def never_in_train(self) -> list[str]:
        """Every held-out sticker (hard test and valid_hard): never a target nor a candidate in training."""
        return sorted(set(self.held_out) | set(self.held_out_valid))

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict (JSON-serialisable) form."""
        return asdict(self)


def _choose_hard_stickers(freq: Counter[str], fraction: float, rng: random.Random,
                          exclude: Iterable[str] = ()) -> list[str]:
    """Seeded choice of held-out stickers among gold stickers of moderate frequency.

    Moderate = used at least twice and not among the most frequent 10% of used
    stickers (the head). ``round(fraction * n_used)`` stickers are drawn.
    """
    n_hard = round(fraction * len(freq))
    if n_hard <= 0:
        return []
    by_freq = sorted(freq, key=lambda s: (-freq[s], s))
    head = set(by_freq[: max(1, round(0.1 * len(freq)))]) | set(exclude)
    pool = sorted(s for s in freq if s not in head and freq[s] >= 2)
    if len(pool) < n_hard:  # tiny data: relax to every non-head sticker
        pool = sorted(s for s in freq if s not in head)
    return sorted(rng.sample(pool, min(n_hard, len(pool))))


def _split_dialogue_ids(dialogue_ids: list[str], valid_fraction: float, test_fraction: float,
                        rng: random.Random) -> dict[str, set[str]]:
    """Shuffle dialogue ids and cut them into train / valid / easy_test."""
    ids = sorted(dialogue_ids)
    rng.shuffle(ids)
    n_valid = round(valid_fraction * len(ids))
    n_test = round(test_fraction * len(ids))
    return {
        "valid": set(ids[:n_valid]),
        "easy_test": set(ids[n_valid: n_valid + n_test]),
        "train": set(ids[n_valid + n_test:]),
    }


def _to_dataset_dict(parts: Mapping[str, list[dict[str, Any]]]) -> DatasetDict:
    """Build the DatasetDict with explicit features (empty splits keep their columns)."""
    from datasets import Dataset, DatasetDict, Features, List, Value

    features = Features({
        "sample_id": Value("string"), "dialogue_id": Value("string"), "turn_index": Value("int64"),
        "speakers": List(Value("string")), "texts": List(Value("string")),
        "sticker_id": Value("string"), "emotion_id": Value("int64"),
    })
    return DatasetDict({
        name: Dataset.from_dict({c: [s[c] for s in parts[name]] for c in SAMPLE_COLUMNS}, features=features)
        for name in SPLIT_NAMES
    })


def split_samples(samples: Sequence[Mapping[str, Any]], *, seed: int = 0, valid_fraction: float = 0.1,
                  test_fraction: float = 0.1, hard_sticker_fraction: float = 0.1,
                  valid_hard_sticker_fraction: float | None = None) -> tuple[DatasetDict, SplitInfo]:
    """:func:`split_sample_rows` as a ``datasets.DatasetDict``."""
    parts, info = split_sample_rows(samples, seed=seed, valid_fraction=valid_fraction,
                                    test_fraction=test_fraction, hard_sticker_fraction=hard_sticker_fraction,
                                    valid_hard_sticker_fraction=valid_hard_sticker_fraction)
    return _to_dataset_dict(parts), info


def split_sample_rows(samples: Sequence[Mapping[str, Any]], *, seed: int = 0, valid_fraction: float = 0.1,
                      test_fraction: float = 0.1, hard_sticker_fraction: float = 0.1,
                      valid_hard_sticker_fraction: float | None = None
                      ) -> tuple[dict[str, list[dict[str, Any]]], SplitInfo]:
    """Deterministic split by dialogue into train / valid / valid_hard / easy_test / hard_test.

    1. Held-out stickers of the hard test: ``round(hard_sticker_fraction * n_used)``
       gold stickers drawn by ``seed`` among those used at least twice and
       outside the 10% most used (see :func:`_choose_hard_stickers`); then, from
       the same pool minus those, the held-out stickers of ``valid_hard``
       (``valid_hard_sticker_fraction``, default = ``hard_sticker_fraction``):
       stickers never seen in training that model selection can use, disjoint
       from the hard test's.
    2. Every dialogue with a hard-test sticker as a sample target leaves the
       train pool; its held-out-gold samples form ``hard_test``, its other
       samples are dropped (counted as ``"hard_dialogue_other"``). Then the same
       for the remaining dialogues with a valid_hard sticker (``valid_hard``,
       ``"valid_hard_dialogue_other"``).
    3. The remaining dialogues are shuffled by ``seed`` and cut into valid
       (``valid_fraction``), easy_test (``test_fraction``) and train (the rest),
       fractions of the remaining dialogues.
    4. valid and easy_test keep only samples whose gold sticker is a target in
       train (dropped ones counted as ``"valid_unseen_gold"`` / ``"easy_test_unseen_gold"``).

    Guarantees (asserted): no held-out sticker is a target in train, valid or
    easy_test; no dialogue is in two splits.
    """
    rng = random.Random(seed)
    freq = Counter(s["sticker_id"] for s in samples)
    held_out = _choose_hard_stickers(freq, hard_sticker_fraction, rng)
    valid_fraction_hard = hard_sticker_fraction if valid_hard_sticker_fraction is None else valid_hard_sticker_fraction
    held_out_valid = _choose_hard_stickers(freq, valid_fraction_hard, random.Random(f"{seed}/valid_hard"),
                                           exclude=held_out)
    hard, hard_valid = set(held_out), set(held_out_valid)
    hard_dialogues = {s["dialogue_id"] for s in samples if s["sticker_id"] in hard}
    valid_hard_dialogues = {s["dialogue_id"] for s in samples if s["sticker_id"] in hard_valid} - hard_dialogues
    rest = sorted({s["dialogue_id"] for s in samples} - hard_dialogues - valid_hard_dialogues)
    groups = _split_dialogue_ids(rest, valid_fraction, test_fraction, rng)
    groups["hard_test"] = hard_dialogues
    groups["valid_hard"] = valid_hard_dialogues
    parts, dropped = _assign_samples(samples, groups, {"hard_test": hard, "valid_hard": hard_valid})
    _check_split(parts, hard | hard_valid)
    info = SplitInfo(
        seed=seed, held_out=held_out,
        counts={name: len(parts[name]) for name in SPLIT_NAMES},
        dialogues={name: len({s["dialogue_id"] for s in parts[name]}) for name in SPLIT_NAMES},
        dropped=dropped,
        fractions={"valid": valid_fraction, "test": test_fraction, "hard_sticker": hard_sticker_fraction,
                   "valid_hard_sticker": valid_fraction_hard},
        held_out_valid=held_out_valid,
    )
    return parts, info


def _assign_samples(samples: Sequence[Mapping[str, Any]], groups: Mapping[str, set[str]],
                    held_out: Mapping[str, set[str]]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """Put each sample into its dialogue's split, applying the gold filters (``held_out``: split ->
    the held-out stickers whose samples it keeps)."""
    split_of = {d: name for name, ids in groups.items() for d in ids}
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLIT_NAMES}
    for sample in samples:
        parts[split_of[sample["dialogue_id"]]].append(dict(sample))
    dropped = {}
    for name, stickers in held_out.items():
        dropped[f"{name.replace('_test', '')}_dialogue_other"] = sum(s["sticker_id"] not in stickers for s in parts[name])
        parts[name] = [s for s in parts[name] if s["sticker_id"] in stickers]
    seen = {s["sticker_id"] for s in parts["train"]}
    for name in ("valid", "easy_test"):
        kept = [s for s in parts[name] if s["sticker_id"] in seen]
        dropped[f"{name}_unseen_gold"] = len(parts[name]) - len(kept)
        parts[name] = kept
    return parts, dropped


def _check_split(parts: Mapping[str, list[Mapping[str, Any]]], hard: set[str]) -> None:
    """Assert the split guarantees (a failure is a bug in this module)."""
    for name in ("train", "valid", "easy_test"):
        leaked = {s["sticker_id"] for s in parts[name]} & hard
        assert not leaked, f"held-out stickers {sorted(leaked)} are targets in {name}"
    owners: dict[str, str] = {}
    for name in SPLIT_NAMES:
        for s in parts[name]:
            other = owners.setdefault(s["dialogue_id"], name)
            assert other == name, f"dialogue {s['dialogue_id']!r} is in both {other} and {name}"


# --------------------------------------------------------------------------- everything


@dataclass
class ModData:
    """A loaded MOD data directory: stickers, dialogues, samples, splits and emotion labels.

    ``emotion_source`` is ``"data"`` (samples carried ``emotion_id``),
    ``"lexicon"`` (sticker-level labels from :mod:`core.data.emotion`, copied into
    each sample's ``emotion_id``) or ``"none"`` (all ``emotion_id`` are -1).
    """

    stickers: StickerSet
    dialogues: dict[str, list[Turn]]
    samples: list[dict[str, Any]]
    split_rows: dict[str, list[dict[str, Any]]]   # split name -> sample dicts
    split_info: SplitInfo
    report: LoadReport
    emotion_labels: dict[str, int] = field(default_factory=dict)
    emotion_names: list[str] = field(default_factory=list)
    emotion_source: str = "none"

    @functools.cached_property
    def splits(self) -> DatasetDict:
        """The splits as a ``datasets.DatasetDict`` (built on first use: importing datasets is slow)."""
        return _to_dataset_dict(self.split_rows)


def _data_emotion_names(data_dir: Path, samples: Sequence[Mapping[str, Any]]) -> list[str]:
    """Emotion names for data-provided emotion ids (emotion_dict.json when present)."""
    path = data_dir / EMOTION_DICT_FILE
    n_ids = max(s["emotion_id"] for s in samples) + 1
    names = load_emotion_dict(path) if path.is_file() else []
    if len(names) < n_ids:
        names = names + [f"emotion_{i}" for i in range(len(names), n_ids)]
    return names


def _apply_emotions(data_dir: Path, stickers: StickerSet, samples: list[dict[str, Any]],
                    lexicon_path: str | Path | None) -> tuple[dict[str, int], list[str], str]:
    """Decide the emotion labels: from the data, from the lexicon, or none."""
    from core.data import emotion  # local import: keeps openpyxl out of plain data loading

    if any(s["emotion_id"] >= 0 for s in samples):
        return {}, _data_emotion_names(data_dir, samples), "data"
    if lexicon_path is None:
        return {}, [], "none"
    labels = emotion.sticker_emotion_labels(stickers, emotion.load_lexicon(lexicon_path))
    for sample in samples:
        sample["emotion_id"] = labels.get(sample["sticker_id"], -1)
    logger.info("lexicon emotion labels for %d of %d stickers", len(labels), len(stickers))
    return labels, list(emotion.EMOTION_CLASSES), "lexicon"


def load_mod(data_dir: str | Path, *, dialogues_path: str | Path | None = None, seed: int = 0,
             lexicon_path: str | Path | None = None, on_error: OnError = "skip",
             sticker_ids: str = "official") -> ModData:
    """Load a MOD data directory end to end: stickers, dialogues, samples, emotions, splits.

    Args:
        data_dir: folder with ``img2id.json``, ``ocr.json``, ``stickers/``, ``dialogues.json``.
        dialogues_path: dialogues file (default ``data_dir/dialogues.json``).
        seed: split seed (see :func:`split_samples`).
        lexicon_path: DUTIR lexicon ``.xlsx``; used only when the samples carry no
            ``emotion_id``.
        on_error: see :func:`load_dialogues`.
        sticker_ids: the dialogues' sticker numbering, ``"official"`` or ``"early-release"``
            (see :func:`load_dialogues`).
    """
    data_dir = Path(data_dir)
    stickers = load_stickers(data_dir)
    path = Path(dialogues_path) if dialogues_path is not None else data_dir / DIALOGUES_FILE
    dialogues, report = load_dialogues(path, stickers, on_error=on_error, sticker_ids=sticker_ids)
    samples = build_samples(dialogues, stickers, report)
    labels, names, source = _apply_emotions(data_dir, stickers, samples, lexicon_path)
    splits, info = split_sample_rows(samples, seed=seed)
    report.merge(stickers.report)
    logger.info("%s: %s", data_dir, report.summary())
    return ModData(stickers, dialogues, samples, splits, info, report, labels, names, source)
