"""The training tasks (core.tasks): each one's loss on the tiny model, the registry, task_weights."""
import json

import pytest
import torch

from assets import DEFAULT_MODEL_DIR
from core.model.config import PAPER_TASK_WEIGHTS, PRESETS, SelectorConfig
from core.model.features import PairEncoder
from core.training.objective import MultitaskObjective
from core.tasks import TASKS, Step, Task, active_tasks, register_task
from tests.test_model import bank, samples, tiny


def one_task_step(objective, name, generator_seed=0):
    """Runs the configured tasks up to and including `name`; returns that task's output."""
    contexts = [objective.contexts(s) for s in samples(4)]
    gold = [objective.bank.position(s["sticker_id"]) for s in samples(4)]
    generator = torch.Generator().manual_seed(generator_seed)
    step = Step(samples(4), contexts, gold, objective.negatives(gold, generator), generator,
                torch.device("cpu"), mask_ocr_inputs=False, wanted=objective.wanted)
    for task in objective.tasks:
        out = task(step)
        if task.name == name:
            return out
        step.shared.update({k: v for k, v in out.items() if k != task.name})
    raise AssertionError(f"{name} did not run")


@pytest.mark.parametrize("name, late, match_loss", [
    ("match", False, "binary"), ("match", True, "in_batch"), ("emotion", False, "binary"),
    ("emotion", True, "in_batch"), ("ctx", False, "binary"), ("sem", False, "binary"),
])
def test_each_task_gives_a_finite_loss_with_a_gradient(name, late, match_loss):
    model, tok = tiny(late_interaction=late)
    enc = PairEncoder(tok, model.config)
    objective = MultitaskObjective(model, enc, bank(enc), match_loss=match_loss, in_batch_negatives=2)
    loss = one_task_step(objective, name)[name]
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_semantic_task_without_any_ocr_text_is_an_exact_zero():
    model, tok = tiny()
    enc = PairEncoder(tok, model.config)
    b = bank(enc)
    b.ocr_ids = [[] for _ in b.ids]
    loss = one_task_step(MultitaskObjective(model, enc, b), "sem")["sem"]
    assert loss.item() == 0.0 and loss.requires_grad


def test_registry_rejects_unknown_names_naming_them_and_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown tasks \['colour'\].*'match', 'emotion', 'ctx', 'sem'"):
        SelectorConfig(task_weights={"match": 1.0, "colour": 0.5})
    with pytest.raises(ValueError, match="reads"):  # emotion reads the matching pass
        SelectorConfig(task_weights={"emotion": 0.2})
    with pytest.raises(ValueError, match="every task off"):
        SelectorConfig(task_weights={"match": 0.0})
    with pytest.raises(ValueError, match="finite number"):
        active_tasks({"match": -1.0})
    with pytest.raises(ValueError, match="taken"):
        register_task(type("Other", (Task,), {"name": "match"}))


def test_absent_or_zero_weight_tasks_are_not_run():
    model, tok = tiny(task_weights={"match": 1.0, "ctx": 0.0, "sem": 0.1})
    enc = PairEncoder(tok, model.config)
    objective = MultitaskObjective(model, enc, bank(enc))
    assert [t.name for t in objective.tasks] == ["match", "sem"]
    assert set(objective(samples(), torch.Generator().manual_seed(0))) == {"match", "sem", "loss"}


def test_old_config_keys_load_to_the_same_task_weights(tmp_path):
    shipped = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    old = {k: v for k, v in shipped.items() if k != "task_weights"}
    old.update(use_ctx=True, use_emo=True, use_sem=True, ctx_weight=0.05, emo_weight=0.2, sem_weight=0.1)
    config = SelectorConfig.from_dict(old)
    assert config.task_weights == PAPER_TASK_WEIGHTS == SelectorConfig().task_weights
    assert SelectorConfig.from_dict({**shipped}) == config  # the shipped file, whichever form it is in
    ablation = SelectorConfig.from_dict({**old, "use_sem": False, "use_emo": False, "ctx_weight": 0.5})
    assert ablation.task_weights == {"match": 1.0, "ctx": 0.5}
    assert SelectorConfig.from_dict({"use_emo": False}).task_weights == {"match": 1.0, "ctx": 0.05, "sem": 0.1}
    with pytest.raises(ValueError, match="both task_weights and the older keys"):
        SelectorConfig.from_dict({"use_ctx": True, "task_weights": {"match": 1.0}})
    config.save(tmp_path / "config.json")  # re-saved in the new form, and read back the same
    assert "use_ctx" not in json.loads((tmp_path / "config.json").read_text())
    assert SelectorConfig.load(tmp_path / "config.json") == config


def test_presets_are_task_weight_overrides():
    assert PRESETS["mmbert"]["task_weights"] == {"match": 1.0}
    assert PRESETS["full"]["task_weights"] == PAPER_TASK_WEIGHTS
    assert PRESETS["full-no-ocr-inputs"]["ocr_in_inputs"] is False


@pytest.fixture
def dummy_task():
    @register_task
    class StickerNorm(Task):  # a toy task: keep the projected sticker slot small
        name = "dummy_norm"
        reads = ()

        def __call__(self, step: Step) -> dict[str, torch.Tensor]:
            features = self.bank.features[step.gold].to(step.device)
            return {self.name: self.model.sticker_projection(features).square().mean()}

    yield StickerNorm
    del TASKS["dummy_norm"]


def test_a_new_task_is_registered_and_run_without_editing_the_objective(dummy_task):
    model, tok = tiny(task_weights={"match": 1.0, "dummy_norm": 0.5})
    model.eval()
    enc = PairEncoder(tok, model.config)
    losses = MultitaskObjective(model, enc, bank(enc))(samples(), torch.Generator().manual_seed(0))
    assert set(losses) == {"match", "dummy_norm", "loss"}
    torch.testing.assert_close(losses["loss"], losses["match"] + 0.5 * losses["dummy_norm"])
    losses["loss"].backward()
    assert model.sticker_projection.weight.grad.abs().sum() > 0
