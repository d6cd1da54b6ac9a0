"""What the demo's handlers do, without gradio: thin calls into ``core`` plus input checks.

:class:`DemoService` owns the selector (``core.serving.inference.StickerSelector``), the optional
annotation store (``core.annotations.AnnotationStore``), the optional user sticker store
(``demo.user_stickers.UserStickerStore``) and the example dialogues. Every method turns bad
input into a :class:`DemoError` whose message can be shown to the user as is; the gradio
layer (:mod:`demo.app`) only formats results.
"""
from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.data.mod import Sticker, UnknownStickerError
from core.data.dialogue import ParsedDialogue, parse_dialogue, sample_text
from core.serving.labels import clean_semantic_label
from demo.errors import DemoError
from demo.sticker_uploads import StickerUploads, UploadReading

__all__ = [
    "CANDIDATE_MODES",
    "DemoError",
    "DemoService",
    "Example",
    "RankOutcome",
    "SALIENCY_METHODS",
    "StickerInfo",
    "UploadReading",
    "load_examples",
    "rank_in",
    "ranked_to_json",
    "rerank_rows",
    "without_prior",
]

logger = logging.getLogger(__name__)

CANDIDATE_MODES = ("all", "random10", "choice")
SALIENCY_METHODS = ("gradient", "integrated_gradients")
RANDOM_CANDIDATES = 10
MAX_CHOSEN = 400
MAX_IG_STEPS = 128
API_LABELS = 30  # /rank: semantic labels of the top 30 (its documented contract)
ProgressFn = Callable[..., Any]


@dataclass(frozen=True)
class StickerInfo:
    """Display facts about a sticker (beyond :class:`core.data.mod.Sticker`)."""

    sticker_id: str
    name: str
    ocr: str
    image_path: str | None
    source: str  # "data", "starter" or "user"
    name_en: str = ""

    @property
    def label(self) -> str:
        """Dropdown label: ``"id · name"``."""
        name = self.name or self.ocr
        extra = f" ({self.name_en})" if self.name_en and self.name_en != name else ""
        return f"{self.sticker_id} · {name}{extra}" if name else self.sticker_id


@dataclass(frozen=True)
class Example:
    """A dialogue to load into the UI; ``gold_id`` is the sticker really sent (if known)."""

    key: str
    title: str
    text: str
    gold_id: str | None = None
    split: str = "demo"
    sample_id: str | None = None

    @property
    def loaded_note(self) -> str:
        """The line shown when the example is loaded."""
        gold = f"; gold sticker {self.gold_id} is marked ★." if self.gold_id else "."
        return f"Loaded {self.split.replace('_', ' ')} example{gold}"


@dataclass
class RankOutcome:
    """A ranking and what went with it."""

    parsed: ParsedDialogue
    ranked: list[Any]  # core.serving.inference.RankedSticker
    candidate_ids: list[str] | None
    gold_id: str | None
    notices: list[str] = field(default_factory=list)
    example: Example | None = None
    with_prior: bool = True  # False: ranked by the dialogue-dependent shares only (score - prior)

    def rank_of(self, sticker_id: str) -> int | None:
        return next((r.rank for r in self.ranked if r.sticker_id == sticker_id), None)

    @property
    def top_id(self) -> str | None:
        return self.ranked[0].sticker_id if self.ranked else None

    def summary(self) -> str:
        """``"Ranked N stickers for speaker A's last turn; gold sticker X is at rank R."``"""
        n = len(self.ranked)
        gold = f"; gold sticker {self.gold_id} is at rank {self.rank_of(self.gold_id)}" if self.gold_id else ""
        prior = "" if self.with_prior else " (without the prior / 不计先验)"
        return (f"Ranked {n} sticker{'s' if n != 1 else ''}{prior} for speaker {self.parsed.sender}'s last turn{gold}. "
                f"/ 已为 {self.parsed.sender} 的最后一句排序 {n} 个表情"
                + (f"，标准答案 {self.gold_id} 排第 {self.rank_of(self.gold_id)}。" if self.gold_id else "。"))


def ranked_to_json(ranked: Sequence[Any]) -> list[dict[str, Any]]:
    """JSON-friendly ranking (``core.serving.inference.RankedSticker`` list): one dict per candidate, best first."""
    return [{
        "sticker_id": r.sticker_id,
        "rank": int(r.rank),
        "score": round(float(r.score), 6),
        "prior": round(float(r.prior), 6),
        "text": round(float(r.text), 6),
        "probability": round(float(r.probability), 6),
        "emotions": [{"emotion": str(name), "probability": round(float(p), 6)} for name, p in r.emotions],
        "semantic_label": str(r.semantic_label),
        "ocr": str(r.ocr),
        "name": str(r.name_label),
    } for r in ranked]


def without_prior(ranked: Sequence[Any]) -> list[Any]:
    """The ranking by the dialogue-dependent shares only (cross-encoder + text scorer, i.e.
    ``score - prior``): each ``RankedSticker`` gets that score and its new rank (``prior`` is kept,
    so the UI can still show it)."""
    import dataclasses

    rescored = [dataclasses.replace(r, score=float(r.score) - float(r.prior)) for r in ranked]
    rescored.sort(key=lambda r: -r.score)  # stable: ties keep the model's order
    return [dataclasses.replace(r, rank=i) for i, r in enumerate(rescored, start=1)]


def rerank_rows(rows: Sequence[dict], *, counted: bool, with_prior: bool) -> list[dict]:
    """:func:`ranked_to_json` rows whose ``score`` did (``counted``) or did not count the prior,
    re-ranked with or without it (``score`` gains or loses ``prior``); other keys are kept."""
    rows = [dict(r) for r in rows]
    if counted != with_prior:
        for row in rows:
            row["score"] = round(float(row["score"]) + (1 if with_prior else -1) * float(row["prior"]), 6)
    rows.sort(key=lambda r: -r["score"])  # stable: ties keep their order
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def rank_in(ranking: Sequence[dict] | None, sticker_id: str | None) -> dict | None:
    """The row of ``sticker_id`` in a :func:`ranked_to_json` ranking (None when absent)."""
    return next((r for r in ranking or [] if r["sticker_id"] == sticker_id), None)


BUILTIN_EXAMPLES: tuple[Example, ...] = (
    Example("demo-zh-sleep", "中文: 困了想睡觉", "A: 你还没睡吗\nB: 还在加班呢\nA: 早点休息吧\nB: 好困啊，我去睡觉了"),
    Example("demo-zh-angry", "中文: 生气", "A: 你又迟到了\nB: 路上堵车嘛\nA: 每次都这么说，气死我了"),
    Example("demo-zh-thanks", "中文: 谢谢", "A: 你的快递我帮你拿了\nB: 太感谢了，你真好"),
    Example("demo-en-happy", "English: good news",
            "A: Guess what, I passed the exam!\nB: Really? Congratulations!\nA: Haha thanks, so happy right now"),
    Example("demo-en-bye", "English: goodbye",
            "A: It's late, I have to go\nB: OK, see you tomorrow\nA: Bye bye, good night"),
    Example("demo-mixed", "中英混合: 无语", "A: 我把手机落在出租车上了\nB: what?? again?\nA: 无语了，真的"),
)


def load_examples(mod_data: Any, *, per_split: int = 100) -> list[Example]:
    """Examples from ``core.data.mod.ModData`` splits ``easy_test`` and ``hard_test`` (gold marked)."""
    examples = []
    for split in ("easy_test", "hard_test"):
        try:  # plain rows when the data has them (no datasets import at start-up), else the DatasetDict
            rows = mod_data.split_rows[split] if hasattr(mod_data, "split_rows") else mod_data.splits[split]
        except (KeyError, AttributeError, TypeError):
            continue
        for i, row in enumerate(rows):
            if i >= per_split:
                break
            text = sample_text(row["speakers"], row["texts"])  # flags key: core.data.dialogue.sample_dialogue_text
            last = " ".join(str(row["texts"][-1]).split())
            short = last if len(last) <= 24 else last[:23] + "…"
            examples.append(Example(
                key=f"{split}:{row['sample_id']}",
                title=f"{split.replace('_', ' ')} · {row['sample_id']} · {short} (gold {row['sticker_id']})",
                text=text, gold_id=str(row["sticker_id"]), split=split, sample_id=str(row["sample_id"]),
            ))
    return examples


class DemoService(StickerUploads):
    """The demo's actions (rank, saliency, OCR, add sticker, flag) as plain methods.

    Args:
        selector: a ``core.serving.inference.StickerSelector``.
        sticker_info: display facts per sticker id (name, English name, source); stickers
            the selector knows but this lacks are described from ``selector.sticker(id)``.
        examples: dialogues the user can load (MOD test samples with their gold sticker).
        annotations: a ``core.annotations.AnnotationStore`` (flagging is off without one).
        user_stickers: a ``demo.user_stickers.UserStickerStore`` (adding is off without one).
        ocr_engine: ``"auto"`` (rapidocr, else easyocr), an engine name, or ``None`` (off).
        data_note: a line shown in the UI about where the stickers come from.
        require_login: flags need a logged-in user, who is then the annotator.
        thumbnails: a ``demo.thumbnails.ThumbnailCache`` (default: one in the temp directory).
    """

    def __init__(self, selector: Any, *, sticker_info: dict[str, StickerInfo] | None = None,
                 examples: Iterable[Example] = (), annotations: Any = None, user_stickers: Any = None,
                 ocr_engine: str | None = "auto", data_note: str = "", require_login: bool = False,
                 thumbnails: Any = None) -> None:
        self.selector = selector
        self._info: dict[str, StickerInfo] = dict(sticker_info or {})
        self.examples: dict[str, Example] = {e.key: e for e in (*examples, *BUILTIN_EXAMPLES)}
        self.annotations = annotations
        self.user_stickers = user_stickers
        self.ocr_engine = ocr_engine
        self.data_note = data_note
        self.require_login = require_login
        self._lock = threading.RLock()  # model calls: one at a time (2 CPU cores)
        if thumbnails is None:
            import tempfile

            from demo.thumbnails import ThumbnailCache

            thumbnails = ThumbnailCache(Path(tempfile.gettempdir()) / "sticker_demo_thumbnails")
        self.thumbnails = thumbnails

    # ------------------------------------------------------------------ stickers

    @property
    def model_version(self) -> str:
        return str(getattr(self.selector, "model_version", "") or "")

    def sticker_ids(self) -> list[str]:
        return list(self.selector.sticker_ids())

    def info(self, sticker_id: str) -> StickerInfo:
        """Display facts for a known sticker; raises :class:`DemoError` for an unknown id."""
        sticker_id = self.check_sticker_id(sticker_id)
        if sticker_id not in self._info:
            sticker = self.selector.sticker(sticker_id)
            self._info[sticker_id] = StickerInfo(
                sticker_id, sticker.name_label, sticker.ocr,
                str(sticker.image_path) if sticker.image_path else None,
                "user" if sticker_id.startswith("user-") else "data")
        return self._info[sticker_id]

    def emotion_names(self) -> list[str]:
        """The model's emotion classes (for the legend)."""
        config = getattr(getattr(self.selector, "model", None), "config", None)
        return [str(n) for n in getattr(config, "emotion_names", None) or []]

    @property
    def has_text_scorer(self) -> bool:
        return getattr(self.selector, "text_scorer", None) is not None

    def thumbnail(self, sticker_id: str) -> str:
        """The small image file the ranking shows for a sticker (made once, then cached)."""
        return self.thumbnails.path(sticker_id, self.info(sticker_id).image_path)

    def prepare_thumbnails(self) -> int:
        """Makes every sticker's thumbnail now (at start), so no ranking waits for one."""
        return sum(1 for sid in self.sticker_ids() if self.thumbnail(sid))

    def static_dirs(self, extra: Iterable[str | Path] = ()) -> list[str]:
        """Directories the web server may serve images from: ``extra``, the thumbnail directory,
        every sticker image's directory and the user sticker directory."""
        dirs = {Path(d).resolve() for d in extra}
        Path(self.thumbnails.directory).mkdir(parents=True, exist_ok=True)
        dirs.add(Path(self.thumbnails.directory).resolve())
        for sid in self.sticker_ids():
            path = self.info(sid).image_path
            if path:
                dirs.add(Path(path).resolve().parent)
        if self.user_stickers is not None:
            dirs.add(Path(self.user_stickers.image_dir).resolve())
        return sorted(str(d) for d in dirs)

    def sticker_choices(self) -> list[tuple[str, str]]:
        """(label, id) pairs for dropdowns."""
        return [(self.info(sid).label, sid) for sid in self.sticker_ids()]

    def check_sticker_id(self, sticker_id: object) -> str:
        """The id as a clean string; :class:`DemoError` when the selector does not know it."""
        if isinstance(sticker_id, (list, tuple)) and len(sticker_id) == 2:  # (label, id) from a dropdown
            sticker_id = sticker_id[1]
        text = str(sticker_id or "").strip()
        if not text:
            raise DemoError("No sticker selected: pick one from the ranking first.",
                            zh="未选择表情：请先从排序结果中选一个。")
        if len(text) > 64 or not text.isprintable():
            raise DemoError("Unknown sticker id (not a valid id).", zh="未知的表情 ID（不是有效的 ID）。")
        try:
            self.selector.sticker(text)
        except (UnknownStickerError, KeyError, ValueError):
            raise DemoError(f"Unknown sticker id {text!r}.", zh=f"未知的表情 ID {text!r}。") from None
        return text

    # ------------------------------------------------------------------ dialogue

    def parse(self, text: object, *, alternate: bool = True) -> ParsedDialogue:
        """Parsed dialogue; :class:`DemoError` when nothing is left to rank."""
        parsed = parse_dialogue(text, alternate=alternate)
        if not parsed:
            raise DemoError("The dialogue is empty: type at least one line (the last line is the "
                            "turn that the sticker goes with).",
                            zh="对话为空：请至少输入一行（最后一行是表情要回应的那一句）。")
        return parsed

    def example(self, key: str | None) -> Example:
        if not key or key not in self.examples:
            raise DemoError(f"Unknown example {key!r}.", zh=f"未知的示例 {key!r}。")
        return self.examples[key]

    def gold_for(self, parsed: ParsedDialogue, example_key: str | None) -> tuple[str | None, Example | None]:
        """The example's gold sticker when the dialogue is still that example's text."""
        if not example_key or example_key not in self.examples:
            return None, None
        example = self.examples[example_key]
        same = parse_dialogue(example.text).canonical_text() == parsed.canonical_text()
        return (example.gold_id, example) if same else (None, None)

    def candidates(self, mode: str, chosen: Sequence[str] | None = None, *, seed: int | None = 0,
                   gold_id: str | None = None) -> list[str] | None:
        """Candidate ids for a ranking mode (None = all stickers)."""
        if mode not in CANDIDATE_MODES:
            raise DemoError(f"Unknown candidate mode {mode!r}; expected one of {', '.join(CANDIDATE_MODES)}.",
                            zh=f"未知的候选模式 {mode!r}；可选：{', '.join(CANDIDATE_MODES)}。")
        if mode == "all":
            return None
        all_ids = self.sticker_ids()
        if mode == "random10":
            rng = random.Random(int(seed or 0))
            pool = [sid for sid in all_ids if sid != gold_id]
            picked = rng.sample(pool, min(len(pool), RANDOM_CANDIDATES - (1 if gold_id in all_ids else 0)))
            if gold_id in all_ids:
                picked.append(gold_id)
            rng.shuffle(picked)
            return picked
        chosen = [c for c in (chosen or []) if str(c).strip()]
        if not chosen:
            raise DemoError("“My choice” needs at least one sticker: pick them in the list.",
                            zh="“自选”至少需要一个表情：请在列表中选择。")
        if len(chosen) > MAX_CHOSEN:
            raise DemoError(f"At most {MAX_CHOSEN} stickers can be chosen.", zh=f"最多只能选择 {MAX_CHOSEN} 个表情。")
        return list(dict.fromkeys(self.check_sticker_id(c) for c in chosen))

    # ------------------------------------------------------------------ model calls

    def rank(self, text: object, *, mode: str = "all", chosen: Sequence[str] | None = None,
             seed: int | None = 0, alternate: bool = True, example_key: str | None = None,
             progress: ProgressFn | None = None, with_prior: bool = True, labels: int = API_LABELS) -> RankOutcome:
        """Rank the candidates for the dialogue typed in ``text``: every candidate is scored; the
        (cleaned) semantic labels are computed for the top ``labels`` only. ``with_prior=False``
        ranks by the dialogue-dependent shares (cross-encoder + text scorer) alone."""
        parsed = self.parse(text, alternate=alternate)
        gold_id, example = self.gold_for(parsed, example_key)
        candidate_ids = self.candidates(mode, chosen, seed=seed, gold_id=gold_id)
        with self._lock:
            try:
                ranked = list(self.selector.rank(parsed.turns(), candidate_ids, progress=progress, semantic_top_k=0))
            except UnknownStickerError as exc:
                raise DemoError(f"Unknown sticker id: {exc}", zh=f"未知的表情 ID：{exc}") from None
            except ValueError as exc:
                raise DemoError(f"Cannot rank this dialogue: {exc}", zh=f"无法为这段对话排序：{exc}") from None
            if not with_prior:
                ranked = without_prior(ranked)
            top = ranked[:max(0, int(labels))]
            for r, label in zip(top, self._labels(parsed, [r.sticker_id for r in top])):
                r.semantic_label = label
        return RankOutcome(parsed, ranked, candidate_ids, gold_id, list(parsed.notices), example, with_prior)

    def prepare(self, text: object, *, alternate: bool = True) -> bool:
        """Encodes the typed dialogue ahead of a click on Rank (the page calls it as the text
        changes), so the ranking that follows only scores stickers. False (nothing done) for a
        dialogue that cannot be ranked yet: ``rank`` reports why."""
        try:
            parsed = self.parse(text, alternate=alternate)
            with self._lock:
                self.selector.prepare(parsed.turns())
        except ValueError:  # DemoError too
            return False
        return True

    def semantic_labels(self, text: object, sticker_ids: Sequence[str], *, alternate: bool = True) -> list[str]:
        """The cleaned semantic labels (``core.serving.labels.clean_semantic_label``) the model
        reconstructs for these stickers in this dialogue: only the rows a page shows need them."""
        parsed = self.parse(text, alternate=alternate)
        ids = [self.check_sticker_id(s) for s in sticker_ids]
        with self._lock:
            return self._labels(parsed, ids)

    def _labels(self, parsed: ParsedDialogue, sticker_ids: Sequence[str]) -> list[str]:
        if not sticker_ids:
            return []
        try:
            context = self.selector.context_ids(parsed.turns())
            rows = [self.selector.bank.position(s) for s in sticker_ids]
            return [clean_semantic_label(t) for t in self.selector.semantic_labels(context, rows)]
        except (UnknownStickerError, KeyError, ValueError) as exc:
            raise DemoError(f"Cannot read the semantic labels: {exc}", zh=f"无法读取语义标签：{exc}") from None

    def saliency(self, text: object, sticker_id: object, method: str = "gradient", *, n_steps: int = 32,
                 alternate: bool = True, progress: ProgressFn | None = None) -> list[tuple[str, float]]:
        """(token, score) pairs: how much each dialogue token drives the sticker's score."""
        if method not in SALIENCY_METHODS:
            raise DemoError(f"Unknown saliency method {method!r}; expected one of {', '.join(SALIENCY_METHODS)}.",
                            zh=f"未知的显著性方法 {method!r}；可选：{', '.join(SALIENCY_METHODS)}。")
        parsed = self.parse(text, alternate=alternate)
        sticker_id = self.check_sticker_id(sticker_id)
        try:
            steps = int(n_steps)
        except (TypeError, ValueError):
            raise DemoError(f"n_steps must be a whole number, got {n_steps!r}.",
                            zh=f"n_steps 必须是整数，收到的是 {n_steps!r}。") from None
        steps = max(2, min(MAX_IG_STEPS, steps))
        with self._lock:
            try:
                pairs = self.selector.saliency(parsed.turns(), sticker_id, method=method, n_steps=steps,
                                               progress=progress)
            except UnknownStickerError as exc:
                raise DemoError(f"Unknown sticker id: {exc}", zh=f"未知的表情 ID：{exc}") from None
            except ValueError as exc:
                raise DemoError(f"Cannot compute saliency: {exc}", zh=f"无法计算显著性：{exc}") from None
        return [(str(token), float(score)) for token, score in pairs]

    # ------------------------------------------------------------------ annotations

    @property
    def can_flag(self) -> bool:
        return self.annotations is not None

    def annotator_for(self, typed: str | None, username: str | None) -> str:
        """The annotator name: the logged-in user when login is required, else the typed name."""
        if self.require_login:
            if not username:
                raise DemoError("Log in to flag stickers (only listed annotators can flag).",
                                zh="请先登录再标注表情（只有名单中的标注者可以标注）。")
            return username
        name = " ".join(str(typed or "").split())
        return name or "anonymous"

    def _store(self) -> Any:
        if self.annotations is None:
            raise DemoError("Flagging is turned off (no annotation database).", zh="标注已关闭（没有标注数据库）。")
        return self.annotations

    def flag(self, text: object, sticker_id: object, *, annotator: str, label: str = "acceptable",
             alternate: bool = True, model_rank: int | None = None, example_key: str | None = None) -> Any:
        """Store ``annotator``'s label for (dialogue, sticker); returns the ``Annotation``."""
        from core.annotations import AnnotationStoreError

        store = self._store()
        parsed = self.parse(text, alternate=alternate)
        sticker_id = self.check_sticker_id(sticker_id)
        _, example = self.gold_for(parsed, example_key)
        try:
            return store.flag(dialogue_text=parsed.canonical_text(), sticker_id=sticker_id, annotator=annotator,
                              label=label, source_sample_id=example.sample_id if example else None,
                              model_version=self.model_version or None, model_rank=model_rank)
        except (AnnotationStoreError, ValueError) as exc:
            raise DemoError(f"Could not save the flag: {exc}", zh=f"无法保存标注：{exc}") from None

    def unflag(self, text: object, sticker_id: object, *, annotator: str, alternate: bool = True) -> bool:
        from core.annotations import AnnotationStoreError

        store = self._store()
        parsed = self.parse(text, alternate=alternate)
        sticker_id = self.check_sticker_id(sticker_id)
        try:
            return store.unflag(dialogue_text=parsed.canonical_text(), sticker_id=sticker_id, annotator=annotator)
        except (AnnotationStoreError, ValueError) as exc:
            raise DemoError(f"Could not remove the flag: {exc}", zh=f"无法删除标注：{exc}") from None

    def flags_for(self, text: object, *, alternate: bool = True) -> list[Any]:
        """All annotations for the dialogue (empty when flagging is off or the text is empty)."""
        from core.annotations import AnnotationStoreError

        if self.annotations is None:
            return []
        parsed = parse_dialogue(text, alternate=alternate)
        if not parsed:
            return []
        try:
            return list(self.annotations.for_dialogue(parsed.canonical_text()))
        except (AnnotationStoreError, ValueError) as exc:
            raise DemoError(f"Could not read the flags: {exc}", zh=f"无法读取标注：{exc}") from None

    def agreement(self) -> dict:
        from core.annotations import AnnotationStoreError

        store = self._store()
        try:
            return store.agreement()
        except AnnotationStoreError as exc:
            raise DemoError(f"Could not compute agreement: {exc}", zh=f"无法计算一致性：{exc}") from None
