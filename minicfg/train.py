"""Training: one loop for every network the project trains, with its objective taken from a registry.

:data:`OBJECTIVES` maps a name to the architecture it trains and its loss: ``eps`` is the CFG diffusion
model on ``diffusion.eps_loss`` (paper Alg. 1), ``noisy_classifier`` the noisy classifier of classifier
guidance on ``diffusion.classifier_loss``, ``evaluator`` the evaluation classifier of the metrics on
``evaluator.evaluator_loss``. :data:`PRESETS` names recipes; :func:`recipe_from` merges a
preset with the options a user set.

Everything random is a function of (seed, step): the batch order (and, for data sets whose record sets
``hflip``, which images are flipped) comes from a generator seeded by the epoch, and the noise, log-SNRs and
label dropout of step ``k`` from a generator seeded by ``k``. A checkpoint therefore only needs the weights,
the EMA, the optimizer and scheduler states and the step; a run resumed from it reproduces the uninterrupted
run exactly.

The device is :func:`minicfg.devices.pick_device`'s (cuda, then mps, then cpu) unless one is given. Started by
``torchrun --nproc_per_node N``, the same loop runs data-parallel (``minicfg.distributed``).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from ._checks import W_MAX
from .checkpoint import CheckpointError, load_tensors, save_tensors, save_weights
from .data import DEFAULT_DATASET, get_dataset, load
from .diffusion import classifier_loss, noisy_accuracy
from .distill import DEFAULT_W_RANGE, distill_loss, distilled, init_student, load_teacher, student_config
from .distributed import ObjectiveModule, setup, shard
from .evaluator import cifar_evaluator_loss, evaluator_loss, evaluator_report
from .nets import build_model
from .posthoc_ema import PROFILE_SIGMA_RELS, gamma_for
from .predictions import DENSITIES, WEIGHTINGS, prediction_loss
from .registry import Registry

__all__ = ["TrainConfig", "Objective", "OBJECTIVES", "register_objective", "PRESETS", "recipe_from", "train",
           "Trainer", "training_preview"]


# pragma: no mutate start (mutation testing covers only the training step and the EMA: docs/mutation.md)
@dataclass
class TrainConfig:
    """A training recipe; stored in the checkpoint so that ``--resume`` continues the same run."""

    dataset: str = DEFAULT_DATASET
    objective: str = "eps"
    train_steps: int | None = 4000
    minutes: float | None = None
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 200
    final_lr_frac: float = 0.05
    ema_decay: float = 0.999
    ema_fraction: float | None = None
    p_uncond: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    bf16: bool = False
    compile: bool = False
    channels_last: bool = True
    lam_min: float = -20.0
    lam_max: float = 20.0
    density: str = "cosine"
    weighting: str = "none"
    weighting_param: float | None = None
    model: dict = field(default_factory=lambda: {"channels": (32, 64), "blocks_per_level": 1})
    teacher: str | None = None
    w_max: float = DEFAULT_W_RANGE[1]
    checkpoint_every_s: float = 60.0
    snapshot_every: int = 0
    sample_every_s: float = 120.0
    log_every: int = 50

    def validate(self) -> None:
        OBJECTIVES.lookup(self.objective)  # an unknown name is a ValueError listing the objectives
        get_dataset(self.dataset)
        if (self.train_steps is None) == (self.minutes is None):
            raise ValueError("give exactly one of train_steps or minutes")
        if self.train_steps is not None and self.train_steps < 1:
            raise ValueError(f"train_steps must be positive, got {self.train_steps}")
        if self.minutes is not None and not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise ValueError(f"minutes must be a positive number, got {self.minutes}")
        if not 0.0 <= self.p_uncond <= 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1], got {self.p_uncond}")
        if self.log_every < 1:
            raise ValueError(f"log_every is a number of steps and must be at least 1, got {self.log_every}")
        if self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"need batch_size >= 1 and lr > 0, got {self.batch_size}, {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.ema_fraction is not None and not 0.0 < self.ema_fraction <= 1.0:
            raise ValueError(f"ema_fraction is a share of the run and must lie in (0, 1], got {self.ema_fraction}")
        if self.snapshot_every < 0:
            raise ValueError(f"snapshot_every is a number of steps (0: no snapshots), got {self.snapshot_every}")
        if self.density not in DENSITIES:
            raise ValueError(f"unknown lam density {self.density!r}; choose one of {sorted(DENSITIES)}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"unknown loss weighting {self.weighting!r}; choose one of {sorted(WEIGHTINGS)}")
        if self.teacher is not None and self.objective != "distill":
            raise ValueError(f"a teacher is only used by the distill objective, not {self.objective!r}; drop "
                             f"--teacher or pass --objective distill")
        if not (DEFAULT_W_RANGE[0] < self.w_max <= W_MAX):
            raise ValueError(f"w_max (the largest w a distilled student learns) must lie in ({DEFAULT_W_RANGE[0]:g}, "
                             f"{W_MAX:g}], got {self.w_max}")


@dataclass(frozen=True)
class Objective:
    """What a run trains: the architecture (``nets.ARCHITECTURES``), ``loss(model, x, labels, recipe,
    num_classes, generator) -> scalar`` on a batch of training images ``x`` with their ``labels`` (in a
    data-parallel run it is also given ``rows=``, the slice of the batch this process computes: draw the
    randomness for the whole batch, evaluate the network on those rows, average over them), and the
    hint printed when a run ends (``{ema}`` is the path of its EMA weights); ``report(model, dataset) -> dict``,
    if given, measures the finished EMA model, and its figures are stored beside the weights; ``model`` holds
    architecture settings the objective fixes (e.g. the prediction the loss trains). ``configure(recipe,
    model_config, device) -> model_config`` and ``init(model, recipe, device)``, if given, let an objective set
    the architecture and the starting weights from elsewhere (a distilled student from its teacher)."""

    arch: str
    loss: object
    next_step: str = "EMA weights for {ema}"
    report: object = None
    model: dict = field(default_factory=dict)
    configure: object = None
    init: object = None


def _check_objective(name: str, objective) -> None:
    if not isinstance(objective, Objective):
        raise ValueError(f"objective {name!r} must be an Objective(arch, loss, ...), got {objective!r}")


#: name -> :class:`Objective`, in registration order; `TrainConfig.objective` names one.
OBJECTIVES = Registry("objective", _check_objective)


def register_objective(name: str, objective: Objective) -> Objective:
    """Add a training objective under ``name``."""
    return OBJECTIVES.add(name, objective)


# pragma: no mutate end
def _diffusion_objective(model, x, labels, recipe, num_classes, generator, rows=None):
    return prediction_loss(model, x, labels, recipe.p_uncond, num_classes, generator=generator,
                           lam_min=recipe.lam_min, lam_max=recipe.lam_max, density=recipe.density,
                           weighting=recipe.weighting, weighting_param=recipe.weighting_param, rows=rows)


def _classifier_objective(model, x, labels, recipe, num_classes, generator, rows=None):
    return classifier_loss(model, x, labels, generator=generator, lam_min=recipe.lam_min, lam_max=recipe.lam_max,
                           rows=rows)


_SAMPLE_HINT = "sample them with `minicfg sample --checkpoint {ema} --out samples.png`"
# the paper's Alg. 1 (with the default density and weighting, prediction_loss is diffusion.eps_loss)
register_objective("eps", Objective("unet", _diffusion_objective, _SAMPLE_HINT, model={"prediction": "eps"}))
register_objective("v", Objective("unet", _diffusion_objective, _SAMPLE_HINT, model={"prediction": "v"}))
register_objective("edm", Objective("unet", _diffusion_objective, _SAMPLE_HINT, model={"prediction": "edm"}))


def _w_range(recipe) -> tuple[float, float]:
    return (DEFAULT_W_RANGE[0], float(recipe.w_max))


def _distill_objective(model, x, labels, recipe, num_classes, generator, rows=None):
    teacher = load_teacher(recipe.teacher, recipe.dataset, x.device)
    return distill_loss(model, teacher, x, labels, generator=generator, lam_min=recipe.lam_min,
                        lam_max=recipe.lam_max, density=recipe.density, rows=rows)


def _distill_configure(recipe, model_config, device):
    teacher = load_teacher(recipe.teacher, recipe.dataset, device)
    return student_config(teacher.config.to_dict(), recipe.model, _w_range(recipe))


def _distill_init(model, recipe, device):
    init_student(model, load_teacher(recipe.teacher, recipe.dataset, device))


# guidance distillation, stage one (Meng et al. 2023; minicfg.distill): the student starts as its teacher
register_objective("distill", Objective(
    "unet", _distill_objective,
    "guide with them: `minicfg sample --guidance distilled --student {ema} --out samples.png`",
    configure=_distill_configure, init=_distill_init))


# pragma: no mutate start (mutation testing covers only the training step and the EMA: docs/mutation.md)
def _noisy_classifier_report(model, dataset: str) -> dict:
    """Accuracy on 2,000 noised test images at a few log-SNRs (the figure the noisy classifier is judged by)."""
    images, labels = load(dataset, train=False).tensors
    acc = noisy_accuracy(model, images[:2000], labels[:2000], (-4.0, -2.0, 0.0, 2.0, 4.0, 10.0, 20.0),
                         generator=torch.Generator().manual_seed(1))
    return {"noisy_test_accuracy": {f"{lam:g}": round(a, 4) for lam, a in acc.items()}}


register_objective("noisy_classifier", Objective(
    "noisy_classifier", _classifier_objective,
    "guide with them: `minicfg sample --guidance classifier --classifier {ema} --out samples.png`",
    report=_noisy_classifier_report))

register_objective("evaluator", Objective(
    "evaluator", evaluator_loss,
    "score samples with them: `minicfg evaluate SAMPLES.npz --evaluator {ema}`", report=evaluator_report))
register_objective("cifar_evaluator", Objective(
    "cifar_evaluator", cifar_evaluator_loss,
    "score samples with them: `minicfg evaluate SAMPLES.npz --dataset cifar10 --evaluator {ema}`",
    report=evaluator_report))

#: Named recipes: ``default`` is the shipped-weights recipe, ``live`` fits notebook 05's live run; both predict v.
#: ``--objective eps`` (or ``recipe_from(..., objective="eps")``) gives the paper's Alg. 1 with the same schedule.
PRESETS: dict[str, dict] = {
    # v-prediction (minicfg.predictions): the measured comparison with the paper's eps is in docs/recipe_mnist.md
    "default": {"objective": "v", "train_steps": 6000},
    "live": {"objective": "v", "train_steps": 1000, "ema_decay": 0.995, "warmup_steps": 100},
    # autoguidance's weak model (Karras et al. 2024): half the channels and a quarter of the default's steps
    "weak": {"objective": "v", "train_steps": 1500, "ema_decay": 0.995, "warmup_steps": 100,
             "model": {"channels": (16, 32), "blocks_per_level": 1}},
    "smoke": {"objective": "v", "train_steps": 60, "ema_decay": 0.9, "warmup_steps": 10, "batch_size": 64},
    # guidance distillation of the shipped model (minicfg.distill): the student starts from the teacher, so a
    # lower peak lr and a short warm-up; measured in docs/guidance_frontier.md
    "distill": {"objective": "distill", "train_steps": 2000, "lr": 5e-4, "warmup_steps": 100, "ema_decay": 0.995},
    # 64/128 channels, two blocks per level: 99.2% at lam = 4 against 98.5% for 32/64 with one (docs/recipe_mnist.md)
    "noisy_classifier": {"objective": "noisy_classifier", "train_steps": 3000, "lr": 1e-3, "weight_decay": 0.05,
                         "model": {"channels": (64, 128), "blocks_per_level": 2}},
    # 4 passes over the 60,000 training digits; warm-up for the first fifth, as the evaluator's earlier loop did
    "evaluator": {"objective": "evaluator", "train_steps": 1872, "lr": 4e-3, "weight_decay": 5e-4,
                  "warmup_steps": 374, "final_lr_frac": 0.0, "ema_decay": 0.998, "grad_clip": 10.0,
                  "model": {"channels": (16, 32, 32, 64), "feature_dim": 128, "dropout": 0.3}},
    # CIFAR-10's U-Net (docs/cifar10.md, "Choosing the preset"): three levels at 16, 8 and 4 pixels after the
    # 2x2 patches, 2.6 M parameters; 15,000 steps of 128 (38 passes) take about 85 minutes on two idle CPU cores
    # under torchrun (measured; the shipped weights ran 16,000 steps: docs/cifar10.md)
    "cifar10": {"objective": "v", "train_steps": 15000, "warmup_steps": 300,
                "model": {"channels": (64, 128, 128), "blocks_per_level": 1}},
    # CIFAR-10's evaluator (docs/cifar10.md, "The evaluator"): flips, translations, label smoothing
    "cifar10_evaluator": {"objective": "cifar_evaluator", "train_steps": 3900, "batch_size": 256, "lr": 2e-3,
                          "weight_decay": 0.05, "warmup_steps": 200, "final_lr_frac": 0.0, "ema_decay": 0.998,
                          "grad_clip": 10.0, "model": {"stem": 32, "channels": (64, 256, 256)}},
}


def recipe_from(preset: str, dataset: str = DEFAULT_DATASET, **overrides) -> TrainConfig:
    """The recipe of ``preset`` with every override that is not None applied (``minutes`` replaces
    ``train_steps`` and the other way round), for ``dataset``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    recipe = dict(PRESETS[preset])
    given = {k: v for k, v in overrides.items() if v is not None}
    if "minutes" in given:
        recipe["train_steps"] = None
    if "train_steps" in given:
        recipe["minutes"] = None
    return TrainConfig(dataset=dataset, **{**recipe, **given})


# pragma: no mutate end
def _ema_fn(decay: float, fraction: float | None = None):
    """EMA update. With ``fraction``: a power EMA whose decay after n updates is ``(1 - 1/n)^(1/fraction)``,
    so that it averages about the last ``fraction`` of the run at every point of it (Karras et al. 2024,
    Eq. 3, with ``gamma + 1 = 1 / fraction``). Without: the decay grows like (1 + n) / (10 + n) until it
    reaches ``decay`` (which 0.999 only does after 9,000 updates)."""

    def avg_fn(averaged, current, num_averaged):
        n = float(num_averaged)
        if fraction is not None:
            d = (1.0 - 1.0 / (n + 1.0)) ** (1.0 / fraction)
        else:
            d = min(decay, (1.0 + n) / (10.0 + n))
        return averaged * d + current * (1.0 - d)

    return avg_fn


def _lr_lambda(recipe: TrainConfig, total_steps: int):
    """Linear warm-up, then cosine decay to ``final_lr_frac`` of the peak at ``total_steps``."""

    def fn(step: int) -> float:
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        progress = min(1.0, (step - recipe.warmup_steps) / max(1, total_steps - recipe.warmup_steps))
        return recipe.final_lr_frac + (1 - recipe.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * progress))

    return fn


class Trainer:
    """State of one training run in folder ``out``; see :func:`train`. ``device`` is a name for
    :func:`minicfg.devices.pick_device` (None: cuda, then mps, then cpu); under torchrun the process joins the
    data-parallel group, and ``rank`` and ``world`` say which process of how many this is."""

    # pragma: no mutate start (mutation testing covers only the training step and the EMA: docs/mutation.md)
    def __init__(self, recipe: TrainConfig, out, data=None, command: str | None = None, device=None):
        recipe.validate()
        self.recipe = recipe
        self.out = Path(out)
        self.command = command or "minicfg.train.train(...) called from Python"
        self.device, self.rank, self.world = setup(device)
        self.rows = shard(recipe.batch_size, self.rank, self.world) if self.world > 1 else None
        torch.manual_seed(recipe.seed)
        record = get_dataset(recipe.dataset)
        self.hflip = record.hflip
        channels, size, _ = record.image_shape
        objective = OBJECTIVES[recipe.objective]
        self.model_config = {"arch": objective.arch, "image_channels": channels, "image_size": size,
                             "num_classes": record.num_classes, **objective.model, **recipe.model}
        if objective.configure is not None:
            self.model_config = objective.configure(recipe, self.model_config, self.device)
        self.model = build_model(self.model_config).to(self.device)
        if objective.init is not None:
            objective.init(self.model, recipe, self.device)
        if recipe.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.parallel = None
        if self.world > 1:  # DDP over the whole loss; its construction also copies rank 0's weights to all
            from torch.nn.parallel import DistributedDataParallel

            module = ObjectiveModule(self.model, objective.loss, recipe, record.num_classes)
            self.parallel = DistributedDataParallel(
                module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.ema = AveragedModel(self.model, avg_fn=_ema_fn(recipe.ema_decay, recipe.ema_fraction), use_buffers=True)
        # post-hoc EMA (minicfg.posthoc_ema): two power EMAs kept only by runs that write snapshots
        self.gammas = [gamma_for(s) for s in PROFILE_SIGMA_RELS] if recipe.snapshot_every else []
        self.profiles = [AveragedModel(self.model, avg_fn=_ema_fn(0.0, 1.0 / (g + 1.0)), use_buffers=True)
                         for g in self.gammas]
        if recipe.compile:  # after the EMAs copied the model: they keep the plain network
            if self.world > 1:
                raise ValueError("--compile is for one process; drop it under torchrun")
            entry = "raw" if hasattr(self.model, "raw") else "forward"  # what the objective calls
            setattr(self.model, entry, torch.compile(getattr(self.model, entry)))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay,
                                     betas=(0.9, 0.99))
        self.step = 0
        self.total_steps = recipe.train_steps
        self.elapsed = 0.0
        self.sched = None
        self.data = data

    # -- state ------------------------------------------------------------------------------------
    def _make_sched(self) -> None:
        for group in self.opt.param_groups:
            group.setdefault("initial_lr", self.recipe.lr)
        self.sched = LambdaLR(self.opt, _lr_lambda(self.recipe, self.total_steps), last_epoch=self.step - 1)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        t = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        t.update(self.average_tensors())
        t["ema_n_averaged"] = self.ema.n_averaged.detach().clone()
        for i, profile in enumerate(self.profiles):
            t[f"profile{i}_n_averaged"] = profile.n_averaged.detach().clone()
        names = {id(p): n for n, p in self.model.named_parameters()}
        for group in self.opt.param_groups:
            for p in group["params"]:
                for k, v in self.opt.state.get(p, {}).items():
                    t[f"opt.{names[id(p)]}.{k}"] = torch.as_tensor(v)
        return t

    def meta(self) -> dict:
        return {
            "model": self.model_config,
            "train": asdict(self.recipe),
            "step": self.step,
            "total_steps": self.total_steps,
            "elapsed_s": round(self.elapsed, 2),
            "dataset": self.recipe.dataset,
            "command": self.command,
            "torch": torch.__version__,
        }

    def save(self) -> Path:
        path = self.out / "checkpoint.safetensors"
        save_tensors(path, self.state_tensors(), self.meta())
        return path

    def average_tensors(self) -> dict[str, torch.Tensor]:
        """The averaged weights: the usual EMA as ``ema.*``, the post-hoc profiles as ``profile{i}.*``."""
        t = {f"ema.{k}": v for k, v in self.ema.module.state_dict().items()}
        for i, profile in enumerate(self.profiles):
            t.update({f"profile{i}.{k}": v for k, v in profile.module.state_dict().items()})
        return t

    def save_snapshot(self) -> Path:
        """Write the usual EMA and the post-hoc profiles of this step to ``OUT/snapshots/step_NNNNNN.safetensors``
        (loadable by ``load_model``, which reads the ``ema.`` tensors; mixed by ``minicfg.posthoc_ema``)."""
        t = self.average_tensors()
        profiles = [{"sigma_rel": s, "gamma": g} for s, g in zip(PROFILE_SIGMA_RELS, self.gammas, strict=True)]
        path = self.out / "snapshots" / f"step_{self.step:06d}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, t, {**self.meta(), "profiles": profiles})
        return path

    def load(self, path) -> None:
        tensors, meta = load_tensors(path)
        saved = meta.get("train", {})
        mine = asdict(self.recipe)
        differ = {k: (saved.get(k), mine[k]) for k in ("dataset", "model", "p_uncond", "batch_size", "seed")
                  if json.dumps(saved.get(k)) != json.dumps(mine[k])}
        if differ:
            raise CheckpointError(
                f"cannot resume from {path}: its recipe differs in {differ} (saved, requested); "
                f"resume with the same options or start a new --out folder"
            )
        try:
            self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            self.ema.module.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        except RuntimeError as err:
            raise CheckpointError(f"{path} does not match the model: {err}") from err
        self.ema.n_averaged.copy_(tensors["ema_n_averaged"])
        for i, profile in enumerate(self.profiles):
            if f"profile{i}_n_averaged" not in tensors:
                raise CheckpointError(f"{path} was written without post-hoc EMA profiles, so a run resumed from it "
                                      f"cannot keep snapshots; resume without --snapshot-every")
            profile.module.load_state_dict({k[len(f"profile{i}."):]: v for k, v in tensors.items()
                                            if k.startswith(f"profile{i}.")})
            profile.n_averaged.copy_(tensors[f"profile{i}_n_averaged"])
        params = dict(self.model.named_parameters())
        for key, v in tensors.items():
            if key.startswith("opt."):
                name, _, slot = key[4:].rpartition(".")
                p = params[name]  # the step counter stays on the CPU, as AdamW keeps it
                self.opt.state[p][slot] = v.clone() if slot == "step" else v.to(p.device)
        self.step = int(meta["step"])
        # --train-steps given again may extend or shorten the run; a --minutes run keeps its calibrated length
        self.total_steps = self.recipe.train_steps or (int(meta["total_steps"]) if meta.get("total_steps") else None)
        self.elapsed = float(meta.get("elapsed_s", 0.0))

    # -- data -------------------------------------------------------------------------------------
    def _ensure_data(self) -> None:
        if self.data is None:
            images, labels = load(self.recipe.dataset, train=True).tensors
            self.data = (images, labels)
        n = self.data[0].shape[0]
        if n < self.recipe.batch_size:
            raise ValueError(f"batch_size {self.recipe.batch_size} exceeds the {n} training images")
        self.steps_per_epoch = n // self.recipe.batch_size
        self._perm_epoch = -1

    # pragma: no mutate end
    def draw(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices of the global batch of ``step`` into the training images, which of them to flip): from a
        permutation and flips drawn per epoch from the seed, the same in every process."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.recipe.seed * 1_000_003 + epoch)
            n = self.data[0].shape[0]
            self._perm = torch.randperm(n, generator=g)
            # drawn after the permutation, so data sets without flips keep the batches they always had
            self._flips = torch.rand(n, generator=g) < 0.5 if self.hflip else torch.zeros(n, dtype=torch.bool)
            self._perm_epoch = epoch
        idx = self._perm[pos * self.recipe.batch_size:(pos + 1) * self.recipe.batch_size]
        return idx, self._flips[idx]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch of ``step`` (images with this epoch's flips applied, labels) on the run's device."""
        idx, flip = self.draw(step)
        x = self.data[0][idx]
        if bool(flip.any()):
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = x.to(self.device)
        if self.recipe.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.data[1][idx].to(self.device)

    # -- one step ---------------------------------------------------------------------------------
    def train_step(self) -> float:
        recipe = self.recipe
        x, y = self.batch(self.step)
        g = torch.Generator(device=self.device).manual_seed(recipe.seed * 1_000_003 + self.step + 1)
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=recipe.bf16):
            if self.parallel is not None:
                loss = self.parallel(x, y, g, self.rows)
            else:
                loss = OBJECTIVES[recipe.objective].loss(self.model, x, y, recipe, self.model_config["num_classes"], g)
        mean = loss.detach().float()
        if self.parallel is not None:  # the loss of the global batch, the same in every process
            torch.distributed.all_reduce(mean)
            mean = mean / self.world
        value = float(mean)
        if not math.isfinite(value):
            raise FloatingPointError(
                f"loss became {value} at step {self.step}; no checkpoint was written with these weights. "
                f"Lower the learning rate (--lr, now {recipe.lr}) or resume from the last good checkpoint."
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), recipe.grad_clip)
        self.opt.step()
        self.sched.step()
        self.ema.update_parameters(self.model)
        for profile in self.profiles:
            profile.update_parameters(self.model)
        self.step += 1
        return value

    # pragma: no mutate block (the rest of the class is not the training step: docs/mutation.md)
    def calibrate_steps(self, minutes: float, probe: int = 30, warm: int = 5) -> int:
        """Turn a time budget into a step count by timing ``probe`` steps (kept in the checkpoint). The ``warm``
        steps before them are not timed: the first steps build kernels and allocate, so timing them made the
        runs of a budget shorter than asked."""
        start = time.perf_counter()
        for _ in range(warm):
            self.train_step()
        t = time.perf_counter()
        for _ in range(probe):
            self.train_step()
        per_step = (time.perf_counter() - t) / probe
        left = minutes * 60 - (time.perf_counter() - start)
        steps = torch.tensor([self.step + max(1, int(left / per_step))], device=self.device)
        if self.world > 1:  # every process must run the same number of steps: rank 0's count
            torch.distributed.broadcast(steps, src=0)
        return int(steps.item())

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, progress: bool = True, on_sample=None, stop_after: int | None = None) -> Path:
        """Train to ``total_steps``; checkpoint every ``checkpoint_every_s``, also on Ctrl-C.

        ``stop_after`` ends the run early at that step (with a checkpoint), as an interruption would.
        """
        recipe = self.recipe
        self._ensure_data()
        if self.total_steps is None:
            self.total_steps = recipe.warmup_steps + 20  # provisional, replaced after calibration
            self._make_sched()
            self.total_steps = self.calibrate_steps(recipe.minutes)
        self._make_sched()
        main = self.rank == 0  # the one process that writes
        if not main:
            progress, on_sample = False, None
        self.out.mkdir(parents=True, exist_ok=True)
        log_path = self.out / "log.csv"
        new_log = not log_path.exists() or self.step == 0
        log = open(log_path, "w" if new_log else "a", newline="") if main else None
        writer = csv.writer(log) if main else None
        if new_log and main:
            writer.writerow(["step", "loss", "lr", "images_per_s", "elapsed_s", "step_loss"])
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not progress, desc="train",
                   dynamic_ncols=True, file=sys.stderr, mininterval=2.0)
        last_ckpt = last_sample = time.perf_counter()
        t_last, step_last, ema_loss = time.perf_counter(), self.step, None
        try:
            while self.step < min(self.total_steps, stop_after or self.total_steps):
                t0 = time.perf_counter()
                loss = self.train_step()
                self.elapsed += time.perf_counter() - t0
                ema_loss = loss if ema_loss is None else 0.98 * ema_loss + 0.02 * loss
                bar.update(1)
                now = time.perf_counter()
                if main and (self.step % recipe.log_every == 0 or self.step == self.total_steps):
                    ips = (self.step - step_last) * recipe.batch_size / max(now - t_last, 1e-9)
                    t_last, step_last = now, self.step
                    lr = self.opt.param_groups[0]["lr"]
                    writer.writerow([self.step, f"{ema_loss:.5f}", f"{lr:.3g}", f"{ips:.0f}", f"{self.elapsed:.1f}",
                                     f"{loss:.7g}"])
                    log.flush()
                    bar.set_postfix(loss=f"{ema_loss:.4f}", img_s=f"{ips:.0f}")
                if main and recipe.snapshot_every and (self.step % recipe.snapshot_every == 0
                                                       or self.step == self.total_steps):
                    self.save_snapshot()
                if main and now - last_ckpt >= recipe.checkpoint_every_s:
                    self.save()
                    last_ckpt = now
                if on_sample is not None and now - last_sample >= recipe.sample_every_s:
                    on_sample(self)
                    last_sample = now
        except KeyboardInterrupt:
            if main:
                self.save()
                print(f"\ninterrupted at step {self.step}: checkpoint saved, continue with --resume", file=sys.stderr)
            raise
        finally:
            bar.close()
            if log is not None:
                log.close()
        path = self.out / "checkpoint.safetensors"
        if not main:
            return path
        self.save()
        if self.step < self.total_steps:
            return path
        report = OBJECTIVES[self.recipe.objective].report
        self.export_ema(self.out / "ema.safetensors",
                        report(self.ema.module.eval(), self.recipe.dataset) if report is not None else None)
        if on_sample is not None:
            on_sample(self)
        return path

    def export_ema(self, path, report: dict | None = None) -> None:
        """Write the EMA weights alone (the shippable file) with the recipe, the command that made it and
        the objective's ``report`` of the finished model (e.g. the evaluator's test accuracy)."""
        model = self.ema.module
        info = {k: v for k, v in self.meta().items() if k != "model"}
        save_weights(path, model, {**info, **(report or {})})


# pragma: no mutate block (the rest of the module is not the training step: docs/mutation.md)
def train(recipe: TrainConfig, out, resume: bool = False, progress: bool = True, command: str | None = None,
          data=None, on_sample=None, device=None) -> Trainer:
    """Train (or, with ``resume``, continue) a run in folder ``out`` on ``device`` (None: the best available);
    returns the finished Trainer. Under torchrun every process calls this and they train data-parallel."""
    ckpt = Path(out) / "checkpoint.safetensors"
    if resume and not ckpt.exists():
        raise CheckpointError(f"--resume given but {ckpt} does not exist; drop --resume to start afresh")
    if not resume and ckpt.exists():
        raise CheckpointError(f"{ckpt} already exists: pass --resume to continue it, or choose another --out")
    trainer = Trainer(recipe, out, data=data, command=command, device=device)
    if resume:
        trainer.load(ckpt)  # every process reads the same file
    trainer.run(progress=progress, on_sample=on_sample)
    return trainer


def training_preview(trainer, ws=(0.0, 1.0), n_per_class: int = 6, n_steps: int = 30) -> Path:
    """Sample a small grid from a Trainer's EMA model into ``OUT/samples.png`` (called during training)."""
    from .generate import generate_grid
    from .sample_files import save_grid
    from .samplers import PREVIEW_SAMPLER

    model = trainer.ema.module
    was_training = model.training
    model.eval()
    student = getattr(model.config, "guidance_range", None) is not None  # a distilled student guides itself
    options = {"guidance": distilled.__name__, "student": model} if student else {}
    panels = generate_grid(model, ws, n_per_class=n_per_class, n_steps=n_steps, sampler=PREVIEW_SAMPLER, seed=0,
                           **options)
    model.train(was_training)
    return save_grid(panels, n_per_class, Path(trainer.out) / "samples.png", title=f"step {trainer.step}")
