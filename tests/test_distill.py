"""Guidance distillation (minicfg.distill): the student's start, the target, the loss, the guidance method, training.

Each is checked against the formula written out here (Eq. 6 of the CFG paper on the teacher's own eps outputs, the
loss of Meng et al. 2023 Sec. 3.1 spelled out with the same random draws) or against the teacher itself."""

import math

import pytest
import torch

from minicfg import guidance
from minicfg.checkpoint import load_model, save_weights
from minicfg.distill import distill_loss, distilled, guided_raw, init_student, load_teacher, student_config
from minicfg.generate import generate
from minicfg.nets import UNet, UNetConfig, build_model
from minicfg.predictions import get_prediction
from minicfg.schedules import alpha_sigma
from minicfg.sweep import count_passes
from minicfg.train import TrainConfig, Trainer, train

TINY = {"channels": (8, 16), "emb_dim": 16, "groups": 4}


def _teacher(prediction="v", seed=0):
    torch.manual_seed(seed)
    net = UNet(UNetConfig(prediction=prediction, **TINY))
    with torch.no_grad():  # the zero-initialised output layers would make every prediction trivial
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def _student(teacher, w_range=(0.0, 4.0)):
    student = build_model(student_config(teacher.config.to_dict(), {}, w_range)).eval()
    return init_student(student, teacher)


def _inputs(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, 28, 28, generator=g)
    lam = torch.linspace(-8, 8, n)
    labels = torch.arange(n) % 10
    return z, lam, labels


def test_untrained_student_is_the_teachers_conditional_prediction_at_every_w():
    teacher = _teacher()
    student = _student(teacher)
    z, lam, labels = _inputs()
    with torch.no_grad():
        expected = teacher(z, lam, labels)
        for w in (0.0, 1.0, torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0, 4.0])):
            torch.testing.assert_close(student(z, lam, labels, w), expected)
        # a student whose w-MLP has learnt something responds to w (the input is wired in)
        student.w_mlp[2].weight.data.normal_(0, 0.3)
        assert not torch.allclose(student(z, lam, labels, 0.0), student(z, lam, labels, 3.0))


@pytest.mark.parametrize("prediction", ["eps", "v", "edm"])
def test_guided_raw_is_the_raw_output_of_eq6_on_the_teachers_eps(prediction):
    teacher = _teacher(prediction)
    z, lam, labels = _inputs()
    w = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
    with torch.no_grad():
        eps_c = teacher(z, lam, labels)
        eps_u = teacher(z, lam, torch.full_like(labels, 10))
        expected = (1 + w[:, None, None, None]) * eps_c - w[:, None, None, None] * eps_u  # Eq. 6 written out
        raw = guided_raw(teacher, z, lam, labels, w)
        lam_b = lam[:, None, None, None]
        eps = get_prediction(prediction).to_eps(raw, z, lam_b, teacher.config.sigma_data)
    torch.testing.assert_close(eps, expected, rtol=1e-4, atol=1e-4)


def test_distill_loss_matches_the_loss_written_out_with_the_same_draws():
    teacher = _teacher()
    student = _student(teacher, (0.5, 3.0))
    student.w_mlp[2].weight.data.normal_(0, 0.3)
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    labels = torch.tensor([0, 3, 5, 7, 9])
    loss = distill_loss(student, teacher, x, labels, generator=torch.Generator().manual_seed(7))
    # the same draws in the same order: lam (cosine density), eps, then w uniform in [0.5, 3]
    g = torch.Generator().manual_seed(7)
    u = torch.rand(5, generator=g).double()
    b = math.atan(math.exp(-10.0))  # the paper's cosine schedule over [-20, 20]: lam = -2 log tan(a u + b)
    a = math.atan(math.exp(10.0)) - b
    lam_ref = (-2 * torch.log(torch.tan(a * u + b))).float().clamp(-20, 20)
    eps = torch.randn(x.shape, generator=g)
    w = 0.5 + 2.5 * torch.rand(5, generator=g)
    alpha, sigma = alpha_sigma(lam_ref[:, None, None, None])
    z = alpha * x + sigma * eps
    with torch.no_grad():
        null = torch.full_like(labels, 10)
        wb = w[:, None, None, None]
        v_c, v_u = teacher.raw(z, lam_ref, labels), teacher.raw(z, lam_ref, null)
        expected = ((student.raw(z, lam_ref, labels, w) - ((1 + wb) * v_c - wb * v_u)) ** 2).mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-6)


def test_distilled_guidance_calls_the_student_once_per_step_with_w():
    teacher = _teacher()
    student = _student(teacher)
    student.w_mlp[2].weight.data.normal_(0, 0.3)
    labels = torch.tensor([1, 2, 3])
    seen = []
    student.register_forward_pre_hook(lambda m, args: seen.append(torch.as_tensor(args[3]).clone()))
    with count_passes([teacher, student]) as passes:
        out = generate(teacher, labels, 1.5, guidance="distilled", student=student, n_steps=7, seed=0)
    assert passes[0] == 7 * 3  # one pass per sample and step (CFG: two), the teacher never called
    assert len(seen) == 7 and all(torch.equal(w, torch.full((3,), 1.5)) for w in seen)
    with count_passes([teacher]) as cfg_passes:
        generate(teacher, labels, 1.5, n_steps=7, seed=0)
    assert cfg_passes[0] == 2 * 7 * 3
    # a per-sample w reaches the student row by row
    eps_fn = distilled(teacher, labels, torch.tensor([0.0, 1.0, 4.0]), student=student)
    z, lam = torch.randn(3, 1, 28, 28), torch.zeros(3)
    with torch.no_grad():
        row = student(z[1:2], lam[1:2], labels[1:2], 1.0)
        torch.testing.assert_close(eps_fn(z, lam)[1:2], row)
    assert out.shape == (3, 1, 28, 28)
    assert guidance.get_guidance_method("distilled").networks == {"student": "distilled_model"}


def test_distilled_refuses_what_it_cannot_do():
    teacher = _teacher()
    student = _student(teacher, (0.0, 2.0))
    labels = torch.tensor([1, 2])
    with pytest.raises(ValueError, match="needs a distilled student"):
        distilled(teacher, labels, 1.0)
    eps_fn = distilled(teacher, labels, 3.0, student=student)
    with pytest.raises(ValueError, match=r"distilled for w in \[0, 2\]"):
        eps_fn(torch.randn(2, 1, 28, 28), torch.zeros(2))
    with pytest.raises(ValueError, match="takes the guidance strength"):
        student(torch.randn(2, 1, 28, 28), torch.zeros(2), labels)
    with pytest.raises(ValueError, match="no guidance input"):
        teacher(torch.randn(2, 1, 28, 28), torch.zeros(2), labels, 1.0)
    with pytest.raises(ValueError, match="one per sample"):
        student(torch.randn(2, 1, 28, 28), torch.zeros(2), labels, torch.ones(3))
    with pytest.raises(ValueError, match="w_min < w_max"):
        UNetConfig(guidance_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="teacher's architecture"):
        student_config(teacher.config.to_dict(), {"channels": (32, 64)}, (0.0, 4.0))


def test_training_a_student_starts_from_the_teacher_and_lowers_the_loss(tmp_path):
    teacher = _teacher()
    save_weights(tmp_path / "teacher.safetensors", teacher, {"dataset": "mnist"})
    with pytest.raises(ValueError, match="distilled student"):  # a student is no teacher
        save_weights(tmp_path / "student.safetensors", _student(teacher), {"dataset": "mnist"})
        load_teacher(tmp_path / "student.safetensors", "mnist", "cpu")
    x = torch.rand(64, 1, 28, 28) * 2 - 1
    y = torch.arange(64) % 10
    recipe = TrainConfig(objective="distill", teacher=str(tmp_path / "teacher.safetensors"), train_steps=40,
                         batch_size=32, lr=3e-3, warmup_steps=2, ema_decay=0.5, model=TINY, sample_every_s=1e9)
    start = Trainer(recipe, tmp_path / "probe", data=(x, y))
    for name, p in teacher.state_dict().items():
        torch.testing.assert_close(start.model.state_dict()[name], p)
    assert start.model.config.guidance_range == (0.0, 4.0)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        before = float(distill_loss(start.model, teacher, x, y, generator=g))
    trainer = train(recipe, tmp_path / "run", data=(x, y), progress=False)
    with torch.no_grad():
        after = float(distill_loss(trainer.model, teacher, x, y, generator=torch.Generator().manual_seed(3)))
    assert after < 0.7 * before
    student, meta = load_model(tmp_path / "run" / "ema.safetensors", role="distilled_model")
    assert student.config.guidance_range == (0.0, 4.0) and meta["train"]["objective"] == "distill"
    with pytest.raises(ValueError, match="only used by the distill objective"):
        TrainConfig(teacher="x.safetensors").validate()
