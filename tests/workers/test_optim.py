"""Optimiser and learning-rate schedules: values at the epochs that matter, and milestone validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from search_spaces.config import ScheduleConfig
from workers.optim import lr_at, make_optimizer, validate_schedule


def test_make_optimizer_is_sgd_with_the_settings():
    opt = make_optimizer(nn.Linear(3, 2), lr=0.1, momentum=0.9, weight_decay=2e-4)
    assert isinstance(opt, torch.optim.SGD)
    g = opt.param_groups[0]
    assert (g["lr"], g["momentum"], g["weight_decay"], len(g["params"])) == (0.1, 0.9, 2e-4, 2)


@pytest.mark.parametrize("epoch,lr", [(0, 0.1), (74, 0.1), (75, 0.01), (89, 0.01), (90, 0.001), (99, 0.001)])
def test_piecewise_fractions(epoch, lr):
    s = ScheduleConfig(kind="piecewise", milestones=(0.75, 0.9), gamma=0.1)
    assert lr_at(epoch, base_lr=0.1, epochs=100, schedule=s) == pytest.approx(lr)


@pytest.mark.parametrize("epoch,lr", [(99, 0.1), (100, 0.01), (149, 0.01), (150, 0.001), (199, 0.001)])
def test_piecewise_epoch_numbers(epoch, lr):
    s = ScheduleConfig(kind="piecewise", milestones=(100, 150))
    assert lr_at(epoch, base_lr=0.1, epochs=200, schedule=s) == pytest.approx(lr)


def test_piecewise_ignores_the_step_within_the_epoch():
    s = ScheduleConfig()
    assert lr_at(74, base_lr=0.1, epochs=100, schedule=s, step_in_epoch=390, steps_per_epoch=391) == 0.1


def test_cosine_endpoints_and_midpoint():
    s = ScheduleConfig(kind="cosine")
    assert lr_at(0, base_lr=0.2, epochs=10, schedule=s) == pytest.approx(0.2)
    assert lr_at(5, base_lr=0.2, epochs=10, schedule=s) == pytest.approx(0.1)
    assert lr_at(10, base_lr=0.2, epochs=10, schedule=s) == pytest.approx(0.0, abs=1e-12)
    # per step: the last step of the last epoch is just above 0, and the rate falls within an epoch
    last = lr_at(9, base_lr=0.2, epochs=10, schedule=s, step_in_epoch=99, steps_per_epoch=100)
    assert 0 < last < 1e-5
    assert lr_at(2, base_lr=0.2, epochs=10, schedule=s, step_in_epoch=50, steps_per_epoch=100) < lr_at(
        2, base_lr=0.2, epochs=10, schedule=s)


@pytest.mark.parametrize("epoch,lr", [(0, 0.1), (75, 0.1), (76, 0.05), (77, 0.025), (79, 0.00625)])
def test_halve_after(epoch, lr):
    s = ScheduleConfig(kind="halve_after", halve_after=75)
    assert lr_at(epoch, base_lr=0.1, epochs=100, schedule=s) == pytest.approx(lr)


def test_constant():
    assert lr_at(57, base_lr=0.01, epochs=100, schedule=ScheduleConfig(kind="constant")) == 0.01


def test_valid_schedules_pass():
    validate_schedule(ScheduleConfig(), 100)
    validate_schedule(ScheduleConfig(milestones=(75,)), 76)  # TRADES: 76 epochs, x0.1 at 75
    validate_schedule(ScheduleConfig(milestones=(100, 150)), 200)
    validate_schedule(ScheduleConfig(kind="cosine", milestones=(500,)), 10)  # milestones unused by cosine


@pytest.mark.parametrize("milestones,epochs", [((100, 150), 120), ((75,), 75), ((1.0,), 100), ((0.0, 0.5), 100)])
def test_invalid_milestones_raise(milestones, epochs):
    with pytest.raises(ValueError, match=r"schedule\.milestones"):
        validate_schedule(ScheduleConfig(milestones=milestones), epochs)
