"""The error-analysis tab's and the contrastive explanation's actions, without gradio.

:class:`AnalysisService` ranks every sample of a test split (the MOD data the demo loaded) or of
an uploaded MOD-format dialogues file with the demo's selector (``core.evaluation.errors``: the one
scoring path), caches the result per source, and gives the misses, recall per gold sticker and the
frequent confusions; a miss becomes an example the rank view can load (gold sticker marked).
:meth:`AnalysisService.contrastive` explains why the model scores its pick above an example's gold
sticker (``core.serving.saliency``: signed attributions of s(pick) - s(gold)). Bad input raises
:class:`demo.service.DemoError`.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from core.data.dialogue import parse_dialogue, sample_text
from core.evaluation import errors
from demo.service import SALIENCY_METHODS, DemoError, DemoService, Example

__all__ = ["ANALYSIS_SPLITS", "Analysis", "AnalysisService", "Contrast", "contrastive", "MAX_SAMPLES", "MAX_UPLOAD_BYTES"]

logger = logging.getLogger(__name__)

ANALYSIS_SPLITS = ("easy_test", "hard_test")
UPLOAD = "upload"
MAX_SAMPLES = 5000
MAX_UPLOAD_BYTES = 20 * 2**20
RECALL_K = 5
Progress = Callable[..., Any]


@dataclass
class Analysis:
    """One source's samples ranked, and what error analysis reads from them."""

    name: str                                   # "easy_test", "hard_test" or the uploaded file's name
    ranked: list[errors.RankedSample]
    skipped: list[str] = field(default_factory=list)  # samples whose gold is not a candidate
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict:
        return errors.summary(self.ranked, k=RECALL_K)

    @property
    def misses(self) -> list[errors.RankedSample]:
        return errors.misses(self.ranked)

    def recall(self) -> list[errors.StickerRecall]:
        return errors.sticker_recall(self.ranked, k=RECALL_K)

    def confusions(self, top: int | None = 10) -> list[tuple[str, str, int]]:
        return errors.confusions(self.ranked, top=top)

    def sample(self, sample_id: str) -> errors.RankedSample:
        found = next((s for s in self.ranked if s.sample_id == sample_id), None)
        if found is None:
            raise DemoError(f"No sample {sample_id!r} in {self.name}: run the analysis again.",
                            zh=f"{self.name} 中没有样本 {sample_id!r}：请重新运行分析。")
        return found


@dataclass
class Contrast:
    """Why the model scores ``pick`` above ``gold`` for a dialogue (``explanation``: an
    ``core.serving.saliency.Explanation`` of s(pick) - s(gold))."""

    pick: str
    gold: str
    pick_rank: int | None
    gold_rank: int | None
    explanation: Any


class AnalysisService:
    """Error analysis over the demo's test splits or an uploaded file, for ``service``'s selector.

    Args:
        service: the demo's :class:`DemoService` (its selector, lock and examples are used).
        splits: split name -> sample rows (``core.data.mod.ModData.split_rows``); without them the
            test examples the demo loaded (``service.examples``) stand in for the splits.
    """

    def __init__(self, service: DemoService, splits: dict[str, list[dict]] | None = None) -> None:
        self.service = service
        self.splits = {name: list(rows) for name, rows in (splits or {}).items() if name in ANALYSIS_SPLITS}
        if not self.splits:  # the examples the demo loaded, grouped by split
            for example in service.examples.values():
                if example.split in ANALYSIS_SPLITS and example.gold_id:
                    self.splits.setdefault(example.split, []).append(_example_row(example))
        self._cache: dict[tuple, Analysis] = {}
        self._cache_lock = threading.Lock()
        self.last: Analysis | None = None

    # ------------------------------------------------------------------ sources

    def sources(self) -> list[tuple[str, str]]:
        """(label, key) of what can be analysed: the test splits with samples, and an upload."""
        choices = [(f"{name.replace('_', ' ')} ({len(rows)} samples)", name) for name, rows in self.splits.items()]
        return choices + [("an uploaded MOD-format dialogues file / 上传的 MOD 格式文件", UPLOAD)]

    def _source(self, source: str | None, upload: str | Path | None) -> tuple[str, list[dict], str, list[str]]:
        """(name, sample rows, cache key part, notes) of a source."""
        if source == UPLOAD or (not source and upload):
            return self._uploaded(upload)
        if source not in self.splits:
            known = ", ".join(self.splits) or "none: start the demo with --data DIR"
            known_zh = ", ".join(self.splits) or "无：请用 --data DIR 启动演示"
            raise DemoError(f"Unknown split {source!r}; the demo has {known}.",
                            zh=f"未知的数据划分 {source!r}；本演示有：{known_zh}。")
        return source, self.splits[source], source, []

    def _uploaded(self, upload: str | Path | None) -> tuple[str, list[dict], str, list[str]]:
        from core.data.mod import DataError, StickerSet, build_samples, load_dialogues

        if not upload:
            raise DemoError("Upload a dialogues file (MOD format: {\"dialogue 1\": [{\"speaker_id\", \"txt\", "
                            "\"img_id\"}, ...]}) first.", zh="请先上传 MOD 格式的对话文件。")
        path = Path(upload)
        try:
            data = path.read_bytes()
        except OSError:
            raise DemoError("The uploaded file is gone; upload it again.", zh="上传的文件已不存在，请重新上传。") from None
        if len(data) > MAX_UPLOAD_BYTES:
            raise DemoError(f"The file is {len(data) / 2**20:.1f} MiB; the limit is {MAX_UPLOAD_BYTES / 2**20:.0f} MiB.",
                            zh=f"文件大小为 {len(data) / 2**20:.1f} MiB，上限为 {MAX_UPLOAD_BYTES / 2**20:.0f} MiB。")
        selector = self.service.selector
        stickers = StickerSet(selector.sticker(i) for i in selector.sticker_ids())
        try:
            dialogues, report = load_dialogues(path, stickers, on_error="skip")
        except (DataError, ValueError) as exc:
            raise DemoError(f"Not a MOD-format dialogues file: {exc}", zh=f"不是 MOD 格式的对话文件：{exc}") from None
        rows = build_samples(dialogues, stickers, report)
        if not rows:
            raise DemoError(f"No samples in {path.name}: no sticker turn after a first turn uses a sticker of the "
                            f"demo ({report.summary()}).",
                            zh=f"{path.name} 中没有样本：第一句之后的表情回复都没有用到本演示的表情"
                               f"（{report.summary()}）。")
        notes = [f"{path.name}: {report.summary()}"] if report.skipped else []
        return path.name, rows, "upload:" + hashlib.sha256(data).hexdigest(), notes

    # ------------------------------------------------------------------ analysis

    def analyse(self, source: str | None, upload: str | Path | None = None, *,
                progress: Progress | None = None) -> Analysis:
        """Every sample of the source ranked against every sticker (cached per source, model and stickers)."""
        name, rows, key, notes = self._source(source, upload)
        if len(rows) > MAX_SAMPLES:
            notes = [*notes, f"Analysed the first {MAX_SAMPLES} of {len(rows)} samples."]
            rows = rows[:MAX_SAMPLES]
        cache_key = (key, self.service.model_version, tuple(self.service.sticker_ids()))
        with self._cache_lock:
            cached = self._cache.get(cache_key)
        if cached is None:
            with self.service._lock:  # model calls: one at a time
                try:
                    ranked, skipped = errors.rank_samples(self.service.selector.scorer, rows, progress=progress)
                except ValueError as exc:
                    raise DemoError(f"Cannot rank these samples: {exc}", zh=f"无法为这些样本排序：{exc}") from None
            cached = Analysis(name, ranked, skipped, notes)
            with self._cache_lock:
                self._cache[cache_key] = cached
        self.last = cached
        return cached

    def load_miss(self, analysis: Analysis | None, sample_id: str) -> tuple[str, str]:
        """(dialogue text, example key) of a sample, ready for the rank view (its gold sticker marked)."""
        if analysis is None:
            raise DemoError("Run the analysis first.", zh="请先运行分析。")
        sample = analysis.sample(str(sample_id))
        key = f"{analysis.name}:{sample.sample_id}"
        text = sample_text(list(sample.speakers), list(sample.texts))
        if key not in self.service.examples:
            last = " ".join(sample.texts[-1].split())
            self.service.examples[key] = Example(
                key=key, title=f"{analysis.name} · {sample.sample_id} · {last[:24]} (gold {sample.gold})", text=text,
                gold_id=sample.gold, split=analysis.name, sample_id=sample.sample_id)
        return self.service.examples[key].text, key

    def contrastive(self, text: object, example_key: str | None, **options: Any) -> Contrast:
        """:func:`contrastive` for this service's demo."""
        return contrastive(self.service, text, example_key, **options)


def contrastive(service: DemoService, text: object, example_key: str | None, *,
                ranking: Sequence[dict] | None = None, ranked_text: str | None = None,
                method: str = "integrated_gradients", n_steps: int = 32, alternate: bool = True,
                progress: Progress | None = None) -> Contrast:
    """Why the model's pick scores above the loaded example's gold sticker: signed attributions of
    s(pick) - s(gold) to the dialogue's tokens. The pick is the first of ``ranking`` (the rank view's
    rows) when ``ranked_text`` says it ranked this dialogue (canonical text), else of a fresh ranking."""
    if method not in SALIENCY_METHODS:
        raise DemoError(f"Unknown saliency method {method!r}; expected one of {', '.join(SALIENCY_METHODS)}.",
                        zh=f"未知的显著性方法 {method!r}；可选：{', '.join(SALIENCY_METHODS)}。")
    parsed = service.parse(text, alternate=alternate)
    gold, _ = service.gold_for(parsed, example_key)
    if not gold:
        raise DemoError("No gold sticker: load an example (or a miss from the error analysis) and keep its "
                        "dialogue unchanged.", zh="请先载入带标准答案的示例。")
    try:
        steps = max(2, min(128, int(n_steps)))
    except (TypeError, ValueError):
        raise DemoError(f"n_steps must be a whole number, got {n_steps!r}.",
                        zh=f"n_steps 必须是整数，收到的是 {n_steps!r}。") from None
    rows = list(ranking or [])
    if ranked_text != parsed.canonical_text():
        rows = []
    with service._lock:
        try:
            if not rows:
                rows = [{"sticker_id": r.sticker_id, "rank": r.rank}
                        for r in service.selector.rank(parsed.turns(), semantic_top_k=0)]
            pick = str(rows[0]["sticker_id"])
            if pick == gold:
                raise DemoError(f"The model's pick is the gold sticker {gold}: nothing to contrast.",
                                zh="模型首选即标准答案。")
            explanation = service.selector.explain(parsed.turns(), {pick: 1.0, gold: -1.0}, method=method,
                                                   n_steps=steps, progress=progress)
        except DemoError:
            raise
        except KeyError as exc:  # core.data.mod.UnknownStickerError: the gold is not a candidate
            raise DemoError(f"Cannot explain this dialogue: {exc}", zh=f"无法解释这段对话：{exc}") from None
        except ValueError as exc:
            raise DemoError(f"Cannot explain this dialogue: {exc}", zh=f"无法解释这段对话：{exc}") from None
    ranks = {str(r["sticker_id"]): r.get("rank") for r in rows}
    return Contrast(pick, gold, ranks.get(pick), ranks.get(gold), explanation)


def _example_row(example: Example) -> dict:
    """A sample row (core.data.mod's keys) of a loaded example."""
    turns = parse_dialogue(example.text).turns()
    return {"sample_id": example.sample_id or example.key, "speakers": [t.speaker for t in turns],
            "texts": [t.text for t in turns], "sticker_id": example.gold_id}
