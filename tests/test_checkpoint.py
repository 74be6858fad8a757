"""Checkpoint checks of kd_core.checkpoint and the config files a refused --resume puts back
(kd_core.engine.SavedRunConfig); fast, no training."""
import os

import pytest
import torch
from torch import nn

from kd_core.checkpoint import (
    ClassHeadCheckpointer,
    ResumeMismatchError,
    check_resumed_model_matches,
    state_dict_differences,
)
from kd_core.engine import SavedRunConfig


def test_state_dict_differences_names_missing_extra_and_reshaped_keys():
    own = {"a": torch.zeros(2), "b": torch.zeros(3, 4), "c": torch.zeros(1)}
    theirs = {"a": torch.zeros(2), "b": torch.zeros(4, 3), "d": torch.zeros(1)}
    assert state_dict_differences(own, theirs) == [
        "'c' is missing from the checkpoint",
        "'d' is in the checkpoint but not in the model",
        "'b' has shape (4, 3) in the checkpoint and (3, 4) in the model",
    ]
    assert state_dict_differences(own, dict(own)) == []


def test_state_dict_differences_strips_a_ddp_prefix_only_from_every_key():
    own = {"a": torch.zeros(2), "module.b": torch.zeros(1)}
    assert state_dict_differences({"a": torch.zeros(2)}, {"module.a": torch.zeros(2)}) == []
    # not every key has the prefix: nothing is stripped (fvcore's rule), so "module.b" is a key of its own
    assert state_dict_differences(own, dict(own)) == []


class _Extra:
    """A checkpointable with a state_differences method, as ScaleKD's AssistantTrainer has."""

    def state_differences(self, state):
        return [] if state == "fits" else ["'w' has shape (1,) in the checkpoint and (2,) in the model"]


def test_resume_check_covers_the_models_extra_checkpointables():
    model = nn.Linear(2, 3)
    checkpoint = {"model": model.state_dict(), "extra": "fits"}
    check_resumed_model_matches(model, checkpoint, "x.pth", {"extra": _Extra()})
    with pytest.raises(ResumeMismatchError, match=r"Cannot resume from x\.pth.*'extra' \(_Extra\) is missing from the checkpoint"):
        check_resumed_model_matches(model, {"model": model.state_dict()}, "x.pth", {"extra": _Extra()})
    with pytest.raises(ResumeMismatchError, match=r"extra: 'w' has shape \(1,\) in the checkpoint"):
        check_resumed_model_matches(model, {**checkpoint, "extra": "other"}, "x.pth", {"extra": _Extra()})
    with pytest.raises(ResumeMismatchError, match=r"'weight' has shape \(3, 3\).*no checkpoint was changed"):
        check_resumed_model_matches(model, {"model": nn.Linear(3, 3).state_dict()}, "x.pth")
    with pytest.raises(TypeError, match="a dict with 'model'"):
        check_resumed_model_matches(model, model.state_dict(), "x.pth")  # a bare state dict


def test_resume_checked_names_must_be_checkpointables():
    with pytest.raises(KeyError, match=r"resume_checked names \['assistant'\]"):
        ClassHeadCheckpointer(nn.Linear(2, 3), resume_checked=["assistant"])


def test_saved_run_config_puts_back_what_was_there(tmp_path):
    out = str(tmp_path)
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write("old: 1\n")
    saved = SavedRunConfig(out)
    with open(os.path.join(out, "config.yaml"), "w") as f:  # what default_setup of the new run writes
        f.write("new: 2\n")
    with open(os.path.join(out, "config.yaml.pkl"), "wb") as f:
        f.write(b"pickled")
    saved.restore()
    with open(os.path.join(out, "config.yaml")) as f:
        assert f.read() == "old: 1\n"
    assert sorted(os.listdir(out)) == ["config.yaml"]  # the .pkl, absent before, is removed; no temp file


def test_saved_run_config_of_a_directory_without_one_removes_the_new_file(tmp_path):
    out = str(tmp_path)
    saved = SavedRunConfig(out)
    with open(os.path.join(out, "config.yaml"), "w") as f:
        f.write("new: 2\n")
    saved.restore()
    assert os.listdir(out) == []
