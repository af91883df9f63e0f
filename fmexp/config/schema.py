"""The typed schema of ``params.yaml``: one dataclass per section, read through OmegaConf.

``fmexp.config.load`` reads a file into these and ``fmexp.config.validate`` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fmexp.flow.ode import Rung

__all__ = [
    "PipelineConfig",
    "DataConfig",
    "MethodConfig",
    "PairConfig",
    "ModelConfig",
    "TrainConfig",
    "SampleConfig",
    "ScoreConfig",
    "SweepConfig",
    "ReflowConfig",
    "ReflowRun",
    "reflow_name",
    "parse_reflow",
    "previous_round",
    "straight",
    "Params",
    "RunConfig",
    "PER_DATASET_SECTIONS",
]


@dataclass
class DataConfig:
    """Sizes and seed of the prepared splits (fixed for every run)."""

    n_train: int = 50_000  # 2-D data; image datasets have their own fixed split
    n_test: int = 2_000
    seed: int = 0
    root: str = "data/raw"  # image folders and torchvision datasets are read from here
    image_size: int = 32  # imagefolder: resize and centre-crop to this side
    channels: int = 3  # imagefolder: 1 (grey) or 3 (RGB)
    download: bool = False  # torchvision datasets: fetch when missing (off: nothing is downloaded)


@dataclass
class MethodConfig:
    """An objective on a path: ``fm`` (CFM, eq. 14) or ``sm`` (DSM baseline). ``path`` and ``coupling`` are
    components (``fmexp.registry``): a registered name or a ``_target_`` mapping with its arguments."""

    objective: str = "fm"
    path: Any = "ot"  # ot | vp | ve | cosine | polynomial | linear_vp, or {_target_: ..., **args}
    sigma_min: float = 1e-4  # std of p_t(x | x_1) at t=1, passed to every path that takes it
    sigma_max: float | None = None  # paths that take it (VE); null: the largest pairwise distance of the training data
    coupling: Any = "independent"  # independent | ot (minibatch OT, Tong et al. 2023), or {_target_: ...}
    input_scale: str = "path"  # path: x_t scaled where its noise exceeds the data's scale (VE) | none: x_t itself
    overrides: dict[str, list[str]] = field(default_factory=dict)  # per dataset: this method's own settings


@dataclass
class PairConfig:
    """A data-to-data problem (Tong et al. 2023): flows from ``source`` to ``target``, two flat datasets
    (fmexp's or ``datasets.<name>``), each split into ``n_train`` (``data.n_train``) and ``n_test`` points.
    Usable wherever a dataset name is; its runs live under ``runs/<pair>/<method>/``."""

    source: str = "moons_tcfm"
    target: str = "8gaussians_tcfm"
    n_test: int = 5000  # held-out points of each side: the exact W2 (at least 5000 points each) and the starts


@dataclass
class ModelConfig:
    """``auto``: the MLP for flat data, the U-Net for images. Each reads its own fields."""

    name: Any = "auto"  # auto | mlp | unet, or {_target_: ..., **args}: a model of the user's (fmexp adds dim, etc.)
    width: int = 256  # mlp
    depth: int = 3  # mlp
    activation: str = "silu"  # mlp
    fourier_features: int = 0  # mlp: random Fourier features of x (0: none)
    fourier_scale: float = 1.0  # mlp: their frequencies' std, in cycles per unit of x
    time_embed_dim: int = 32
    channels: int = 32  # unet (the paper's CIFAR-10: 256)
    channel_mults: list[int] = field(default_factory=lambda: [1, 2])  # unet (CIFAR-10: [1, 2, 2, 2])
    num_res_blocks: int = 1  # unet (CIFAR-10: 2)
    attention_resolutions: list[int] = field(default_factory=list)  # unet (CIFAR-10: [16])
    head_channels: int = 0  # unet: channels per attention head (CIFAR-10: 64, ADM's); 0: one head
    dropout: float = 0.0  # unet


@dataclass
class TrainConfig:
    """Optimization of one run: AdamW with linear warmup, gradient clipping and EMA weights."""

    steps: int = 2000
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    lr_schedule: str = "constant"  # constant | cosine | linear: the decay to 0 at ``steps`` after the warmup
    time_sampler: Any = "uniform"  # uniform | logit_normal, or {_target_: ...}: the distribution of t in the loss
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    ema_decay: float = 0.995
    eval_every: int = 500  # rows of the convergence curve; the last step always gets one
    val_batch: int = 2048  # held-out points for the validation loss
    checkpoint_every: int = 0  # 0: only at the end
    curve_points: int = 256  # held-out points for the NLL and dopri5-NFE columns of the curve; 0: none
    curve_tol: float = 1e-5  # dopri5 rtol = atol for those columns
    device: str = "auto"  # auto | cpu | cuda
    nproc: int = 1  # processes (GPUs) that share each batch: the train stage launches torchrun when > 1
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast for the loss; fp16 adds a gradient scaler)
    label_dropout: float | None = None  # null: unconditional; in [0, 1): class-conditional, labels dropped to null


@dataclass
class SampleConfig:
    """dopri5 at the paper's tolerance, plus a ladder of fixed-step solvers for the NFE curve (Fig. 7)."""

    method: str = "dopri5"
    rtol: float = 1e-5
    atol: float | None = None  # null: equal to rtol (the paper's atol = rtol = 1e-5)
    steps: int = 100  # used only when ``method`` is a fixed-step solver
    n_samples: int = 2000
    fixed_solvers: list[str] = field(default_factory=lambda: ["euler", "midpoint", "rk4"])
    grids: list[str] = field(default_factory=lambda: ["uniform"])  # time grids of the ladder (fmexp.flow.grids)
    nfe_ladder: list[int] = field(default_factory=lambda: [4, 8, 16, 32, 64])
    n_trajectories: int = 12
    batch_size: int | None = None  # samples per ODE solve: peak memory is bounded by it (null: all at once)
    ladder_samples: int | None = None  # the first this many samples also run the NFE ladder (null: all of them)
    guidance: list[float] = field(default_factory=list)  # a conditional model: the guidance scales w sampled
    guidance_sampler: str = "midpoint"  # their fixed-step solver (@grid where not uniform), on the ladder's samples
    guidance_nfe: int = 8  # at this NFE per path

    @property
    def guidance_rung(self) -> Rung:
        """The ``Rung`` of ``guidance_sampler`` at ``guidance_nfe``: the w sweep's sampler."""
        from fmexp.flow.ode import Rung

        return Rung.at(self.guidance_sampler, self.guidance_nfe)

    @property
    def tolerances(self) -> dict[str, float]:
        """``rtol`` and ``atol`` as keyword arguments of ``integrate`` and ``log_likelihood``."""
        return {"rtol": self.rtol, "atol": self.rtol if self.atol is None else self.atol}


@dataclass
class ScoreConfig:
    """Exact NLL on the held-out split and a sample distance to it."""

    n_points: int = 1000
    divergence: str = "auto"  # auto (exact for flat data, hutchinson for images) | exact | hutchinson
    probe: str = "rademacher"  # hutchinson probes: rademacher | gaussian
    probes: int = 1  # hutchinson probes per point, fixed over the solve; the estimate's variance falls as 1/probes
    dequant_draws: int = 1  # images: K dequantizations per point, combined by log-mean-exp (Table 4)
    fid_backend: str = (
        "auto"  # auto (digits-classifier for digits, else inception) | digits-classifier | inception | none (no FID)
    )
    inception_weights: str | None = None  # local InceptionV3 weights file for the inception backend
    distance: str = "w2"  # w2 | sliced_w2
    density_grid: int = 40  # side of the grid on which 2-D densities are drawn (Fig. 4); 0: none
    batch_size: int | None = None  # held-out points per likelihood solve (null: all at once)
    density_times: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0]
    )  # the times t of p_t drawn (Fig. 4)
    few_step: str = "euler"  # the sampler of the few_step metric: a fixed solver of the ladder, @grid where not uniform
    few_step_nfe: int = 4  # and its NFE budget: the metric is the quality of that rung of the NFE ladder
    guidance_scale: float = 1.0  # the w of sample.guidance whose FID and accuracy are guided_fid, guided_accuracy

    @property
    def few_step_rung(self) -> str:
        """The ``samples.pt`` ladder key of the ``few_step`` sampler at its budget (``fmexp.flow.ode.Rung``)."""
        from fmexp.flow.ode import Rung

        return Rung.at(self.few_step, self.few_step_nfe).key


@dataclass
class SweepConfig:
    studies: list[str] = field(default_factory=list)  # run by the pipeline's sweep stages
    tuning: list[str] = field(default_factory=list)  # run by hand; their results ship, and the report reads them


@dataclass
class PipelineConfig:
    """The axes of the DVC matrix: every dataset x method x seed is one run."""

    datasets: list[str] = field(default_factory=lambda: ["checkerboard", "8gaussians"])
    methods: list[str] = field(default_factory=lambda: ["fm_ot", "fm_vp", "sm_vp", "fm_ve"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    workers: int = (
        1  # processes per stage that run its seeds side by side, each with cores // workers threads (at least 1)
    )
    methods_by_dataset: dict[str, list[str]] = field(
        default_factory=dict
    )  # a dataset or pair that runs other methods than ``methods`` (a pair: its data-to-data methods)
    cells: list[str] | None = (
        None  # "dataset/method" cells to run (a method on some datasets only); None: every dataset's methods
    )

    def methods_of(self, dataset: str) -> list[str]:
        """The methods that ``dataset`` runs: its ``methods_by_dataset`` entry, else ``methods``."""
        return self.methods_by_dataset.get(dataset, self.methods)

    def cell_list(self) -> list[tuple[str, str]]:
        """The (dataset, method) cells: ``cells`` where given, else every dataset with each of its methods."""
        if self.cells is not None:
            return [(c.partition("/")[0], c.partition("/")[2]) for c in self.cells]
        return [(d, m) for d in self.datasets for m in self.methods_of(d)]


REFLOW = "_reflow"
"""Round k of reflowing method m is the method ``m_reflow<k>`` (``reflow_name``)."""


def reflow_name(method: str, k: int) -> str:
    """The name of round ``k`` of reflowing ``method``: ``fm_ot_reflow1``."""
    return f"{method}{REFLOW}{k}"


def parse_reflow(name: str) -> tuple[str, int] | None:
    """``(method, k)`` of a round's name, or None where ``name`` names no round."""
    base, sep, k = name.rpartition(REFLOW)
    return (base, int(k)) if sep and base and k.isdigit() and int(k) >= 1 else None


def previous_round(method: str, k: int) -> str:
    """The method whose model round ``k`` of reflowing ``method`` starts from (round 1: ``method`` itself)."""
    return method if k == 1 else reflow_name(method, k - 1)


def straight() -> MethodConfig:
    """A reflow round's method: flow matching on the straight interpolant ``x_t = t x_1 + (1 - t) x_0`` between
    its couples (the OT path with ``sigma_min = 0``, eq. 20-22; Liu et al. 2022, eq. 1)."""
    return MethodConfig(objective="fm", path="ot", sigma_min=0.0)


@dataclass
class ReflowConfig:
    """Reflow (Liu et al. 2022, "Flow Straight and Fast"): round k of a cell trains a flow on couples of noise
    and the round k-1 flow's dopri5 samples, warm-started from its weights (round 0: the cell's own model).
    Round k of ``dataset/method`` runs as the cell ``dataset/method_reflow<k>`` (docs/reflow.md)."""

    cells: list[str] = field(default_factory=list)  # "dataset/method" cells of the pipeline to reflow (2-D data)
    rounds: int = 1  # k = 1..rounds
    n_pairs: int = 10000  # couples per round and seed, from a noise stream of their own
    overrides: list[str] = field(default_factory=list)  # the rounds' model/train/sample/score, over the cell's own


@dataclass
class ReflowRun:
    """A run that is round ``round`` of reflowing method ``of``."""

    of: str
    round: int
    n_pairs: int
    previous_method: MethodConfig = field(default_factory=MethodConfig)  # the method of round k - 1

    @property
    def previous(self) -> str:
        """The method whose model and samples this round starts from."""
        return previous_round(self.of, self.round)


@dataclass
class Params:
    """The whole of ``params.yaml``: the pipeline's axes, the named methods, one section per stage."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    methods: dict[str, MethodConfig] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    per_dataset: dict[str, list[str]] = field(default_factory=dict)  # overrides of PER_DATASET_SECTIONS, per dataset
    datasets: dict[str, Any] = field(default_factory=dict)  # the user's own: name -> {_target_: ..., **args}
    pairs: dict[str, PairConfig] = field(default_factory=dict)  # data-to-data problems: name -> {source, target}
    reflow: ReflowConfig = field(default_factory=ReflowConfig)

    def rounds_of(self, dataset: str) -> list[str]:
        """The reflow rounds that run on ``dataset``: ``m_reflow1 .. m_reflow<rounds>`` per reflowed cell."""
        cells = self.pipeline.cell_list()
        return [
            reflow_name(m, k)
            for d, m in (c.partition("/")[::2] for c in self.reflow.cells)
            if d == dataset and (d, m) in cells
            for k in range(1, self.reflow.rounds + 1)
        ]

    def method_config(self, name: str) -> MethodConfig:
        """``methods.<name>``, or a reflow round's: the straight path between its couples (``straight``)."""
        return self.methods[name] if name in self.methods or parse_reflow(name) is None else straight()

    def methods_of(self, dataset: str) -> list[str]:
        """The methods that ``dataset`` runs (``PipelineConfig.methods_of``), then its reflow rounds."""
        return [*self.pipeline.methods_of(dataset), *self.rounds_of(dataset)]

    def cell_list(self) -> list[tuple[str, str]]:
        """The pipeline's (dataset, method) cells (``PipelineConfig.cell_list``), then the reflow rounds'."""
        cells = self.pipeline.cell_list()
        return cells + [(d, r) for d in dict.fromkeys(d for d, _ in cells) for r in self.rounds_of(d)]


@dataclass
class RunConfig:
    """Everything one train/sample/score run reads; a sweep trial is one of these."""

    dataset: str = "checkerboard"
    dataset_spec: Any = None  # a dataset of params.yaml's ``datasets``: its {_target_: ...}; None: fmexp's own
    pair: PairConfig | None = None  # a pair of params.yaml's ``pairs``: ``dataset`` names it
    pair_specs: dict[str, Any] = field(default_factory=dict)  # the pair's datasets of params.yaml's ``datasets``
    method_name: str = "fm_ot"
    method: MethodConfig = field(default_factory=MethodConfig)
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    reflow: ReflowRun | None = None  # a reflow round: whose couples it trains on


PER_DATASET_SECTIONS = ("model", "train", "sample", "score")
"""The sections that ``per_dataset.<dataset>`` entries may override."""
