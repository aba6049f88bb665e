"""The open-book world as pipeline stages: the demo's first section, and ``--profile world`` alone.

A world where the right answer and the typical hallucination are both known (``aligner.data.sources.world``):
fictional people with a default value per attribute (the model's "memory"), contexts that state 3-6 facts, and
held-out knowledge conflicts whose context states another value than the default.  Every step is a real stage script
on the world's files:

1. ``scripts/make_world.py``: the world in the project's formats; ``make_tiny_model.py --word_vocab``: a tiny Llama
   with one token per world word; ``train_rag_sft.py``: the warm start, whose conflict targets are the memory answer
   for a fixed share of the people, so that the base answers from memory a measurable part of the time;
2. the curriculum pairs by the project's own data stages on the world's SQuAD-style rows (SQuAD set, easy fakes, NER
   medium fakes, context restore, pairs) with the memory answers as the hard fakes, keeping the ideal-answer pairs
   (``create_dataset.py --pair_types ideal``: the study's fake-vs-fake pairs prefer the memory answer to the other
   fakes, and cancel the effect);
3. ``train_dpop_improved.py``: curriculum DPOP, plain DPO (``--lam 0``) and DPOP on one shuffled stage of the same
   pair visits (``--curriculum_order shuffled``);
4. ``eval_halueval.py`` (greedy) on the held-out conflicts (``results/World``) and controls (``results/World/control``),
   then ``scripts/make_world_report.py`` (``world.md``, ``world.png``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aligner.core.paths import PAIR_FILES, minilm_model_path, result_file
from aligner.data.negatives import EasyFakeConfig, RestoreContextConfig
from aligner.data.ner import MediumFakeConfig
from aligner.data.pairs import CurriculumPairsConfig
from aligner.data.sft import SFTView, SquadConfig
from aligner.data.sources.world import WorldConfig
from aligner.data.world_files import (
    CONFLICT_FILE,
    CONTROL_FILE,
    ITEMS_FILE,
    SFT_FILE,
    SQUAD_FILE,
    VOCAB_FILE,
    MemoryFakesConfig,
    WorldFilesConfig,
)
from aligner.eval.tasks.halueval import HaluEvalSimilarityConfig
from aligner.pipeline.runner import Stage, script_command
from aligner.report.world import WorldReportConfig
from aligner.testing.tiny import TinyModelConfig, TinyModelOutput
from aligner.train.config import CurriculumData, DPOPTrainingConfig
from aligner.train.sft import RagSFTConfig

_NEG = "first_improvement/data_prep/negative_sampling/scripts"
#: the adapters trained on the world: (folder, what it is, the trainer settings that differ)
WORLD_MODELS = (("dpop", "curriculum DPOP", {}), ("dpo", "plain DPO (λ 0)", {"lam": 0.0}),
                ("shuffled", "DPOP, one shuffled stage", {"curriculum_order": "shuffled"}))
RUN_NAME = "world"


@dataclass
class WorldSettings:
    """The world, its tiny model and their training: what gives a base that answers from memory a measurable part
    of the time and a clear DPOP effect in a few minutes on two CPU cores (README: the demo)."""

    seed: int = 0
    n_people: int = 60
    n_sft: int = 12000
    n_pair_items: int = 400
    n_heldout: tuple[int, int, int] = (300, 50, 50)   # conflict, agree, novel
    num_layers: int = 2
    hidden_size: int = 128
    initializer_range: float = 0.06
    warm_steps: int = 1500
    warm_batch: int = 16
    warm_lr: float = 3e-3
    lr: float = 5e-3
    beta: float = 0.3
    lam: float = 50.0
    batch: int = 8
    warmup_steps: int = 10
    lora_r: int = 16
    max_new_tokens: int = 24
    eval_batch: int = 64
    pair_types: str = "ideal"   # create_dataset.py --pair_types: the study's "all" cancels the effect (README)
    adapters: tuple[str, ...] = tuple(name for name, _, _ in WORLD_MODELS)   # which of WORLD_MODELS to train

    def __post_init__(self):
        names = [name for name, _, _ in WORLD_MODELS]
        unknown = [a for a in self.adapters if a not in names]
        if unknown or not self.adapters:
            raise ValueError(f"WorldSettings.adapters: unknown {unknown} or none; choose from {names}")

    def models(self) -> list[tuple[str, str, dict]]:
        """The adapters to train: (folder, what it is, the trainer settings that differ), in WORLD_MODELS' order."""
        return [m for m in WORLD_MODELS if m[0] in self.adapters]


@dataclass
class WorldLayout:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "world" / "data"

    @property
    def base(self) -> Path:
        return self.root / "world" / "models" / "tiny-world"

    @property
    def warm(self) -> Path:
        return self.root / "world" / "models" / "tiny-world-warm"

    @property
    def prep(self) -> Path:
        return self.root / "world" / "prep"

    @property
    def train(self) -> Path:
        return self.root / "world" / "train"

    @property
    def results(self) -> Path:
        return self.root / "results" / "World"


def world_model_stages(w: WorldSettings, d: WorldLayout) -> list[Stage]:
    world = script_command("scripts/make_world.py", (WorldFilesConfig, WorldConfig), output_dir=d.data, seed=w.seed,
                           n_people=w.n_people, n_sft=w.n_sft, n_pair_items=w.n_pair_items, n_heldout=list(w.n_heldout))
    model = script_command("scripts/make_tiny_model.py", (TinyModelOutput, TinyModelConfig), output_dir=d.base,
                           word_vocab=d.data / VOCAB_FILE, num_layers=w.num_layers, hidden_size=w.hidden_size,
                           initializer_range=w.initializer_range, seed=w.seed)
    warm = script_command("old_training/train_rag_sft.py", RagSFTConfig, model_path=d.base,
                          data_files=[d.data / SFT_FILE], output_dir=d.warm, full_finetune=True, max_length=160,
                          max_steps=w.warm_steps, per_device_batch_size=w.warm_batch, grad_accum_steps=1, lr=w.warm_lr,
                          warmup_ratio=0.05, logging_steps=100, save_steps=100000, seed=w.seed)
    return [
        Stage("world_data", world, outputs=[d.data / f for f in (SFT_FILE, SQUAD_FILE, CONFLICT_FILE, CONTROL_FILE,
                                                                  ITEMS_FILE, VOCAB_FILE)],
              run_config=d.data / "run_config.json", note=f"({w.n_people} people, {w.n_sft} warm-start rows)"),
        Stage("world_tiny_policy", model, outputs=[d.base / "model.safetensors"], inputs=[d.data / VOCAB_FILE],
              note=f"({w.num_layers} layers, width {w.hidden_size}, one token per world word)"),
        Stage("world_warm_start", warm, outputs=[d.warm / "model.safetensors"], inputs=[d.base, d.data / SFT_FILE],
              run_config=d.warm / "run_config.json",
              note=f"({w.warm_steps} SFT steps; a share of the conflicts answered from memory)"),
    ]


def world_pair_stages(w: WorldSettings, d: WorldLayout) -> list[Stage]:
    """The project's data stages 3-5 and 7-8 on the world's SQuAD-style rows, the memory answers as hard fakes."""
    squad, view = d.prep / "squad" / "squad.jsonl", d.prep / "easy" / "sft_view.jsonl"
    easy, medium = d.prep / "easy" / "easy_fakes.jsonl", d.prep / "medium" / "medium_fakes.jsonl"
    hard, restored = d.prep / "hard" / "memory_fakes.jsonl", d.prep / "with_context"
    sft_view = dict(nq_jsonl="", squad_jsonl=squad)
    return [
        Stage("world_squad_set", script_command("first_improvement/data_prep/scripts/create_squad_training.py",
                                                SquadConfig, csv_file=d.data / SQUAD_FILE, output_file=squad,
                                                n_answerable=-1, n_unanswerable=-1, seed=w.seed),
              outputs=[squad], inputs=[d.data / SQUAD_FILE]),
        Stage("world_easy_fakes", script_command(f"{_NEG}/generate_easy_fakes.py", (SFTView, EasyFakeConfig),
                                                 **sft_view, output_file=easy, view_file=view, seed=w.seed),
              outputs=[easy, view], inputs=[squad]),
        Stage("world_medium_fakes", script_command(f"{_NEG}/generate_medium_fakes.py", (SFTView, MediumFakeConfig),
                                                   **sft_view, output_file=medium, spacy_model="auto", seed=w.seed,
                                                   progress=False), outputs=[medium], inputs=[squad]),
        Stage("world_memory_fakes", script_command("scripts/world_memory_fakes.py", MemoryFakesConfig, view_file=view,
                                                   items_file=d.data / ITEMS_FILE, output_file=hard),
              outputs=[hard], inputs=[view, d.data / ITEMS_FILE], note="(hard fakes: the memory answers)"),
        Stage("world_fix_fakes", script_command(f"{_NEG}/fix_fakes.py", (SFTView, RestoreContextConfig), **sft_view,
                                                easy_file=easy, medium_file=medium, hard_file=hard,
                                                output_dir=restored, seed=w.seed),
              outputs=[restored], inputs=[easy, medium, hard]),
        Stage("world_pairs", script_command(f"{_NEG}/create_dataset.py", CurriculumPairsConfig, input_dir=restored,
                                            output_dir=d.prep, seed=w.seed, pair_types=w.pair_types),
              outputs=[d.prep / n for n in PAIR_FILES], inputs=[restored], note=f"({w.pair_types} pair types)"),
    ]


def world_training_stages(w: WorldSettings, d: WorldLayout) -> list[Stage]:
    pairs = [d.prep / n for n in PAIR_FILES]
    common = dict(model_path=d.warm, data_files=",".join(map(str, pairs)), beta=w.beta, lam=w.lam, lr=w.lr,
                  per_device_batch_size=w.batch, grad_accum_steps=1, warmup_steps=w.warmup_steps, max_length=160,
                  lora_r=w.lora_r, lora_alpha=2 * w.lora_r, logging_steps=5, save_every_steps=0, seed=w.seed,
                  epochs=4, progress=False, overwrite_output_dir=True)
    return [Stage(f"world_train_{name}", script_command("first_improvement/training/train_dpop_improved.py",
                                                        (CurriculumData, DPOPTrainingConfig),
                                                        **{**common, **extra, "output_dir": d.train / name}),
                  outputs=[d.train / name / "adapter_config.json", d.train / name / "train_log.jsonl"],
                  inputs=[d.warm, *pairs], run_config=d.train / name / "run_config.json", note=f"({what})")
            for name, what, extra in w.models()]


def world_eval_stages(w: WorldSettings, d: WorldLayout, output_root: Path) -> list[Stage]:
    minilm = str(minilm_model_path())
    trained = w.models()
    models = ["base", *(name for name, _, _ in trained)]
    adapters = ["none", *(str(d.train / name) for name, _, _ in trained)]
    stages = []
    for part, data, out in (("conflicts", CONFLICT_FILE, d.results), ("controls", CONTROL_FILE, d.results / "control")):
        cmd = script_command("evaluation/eval_halueval.py", HaluEvalSimilarityConfig, model_path=d.warm,
                             lora_path=adapters, data_path=d.data / data, run_name=RUN_NAME, output_dir=out,
                             backend="hf", generation_config="greedy", max_new_tokens=w.max_new_tokens,
                             batch_size=w.eval_batch, embed_model=minilm, bertscore_model=minilm,
                             bertscore_num_layers=6, progress=False, overwrite=True, seed=w.seed)
        stages.append(Stage(f"world_eval_{part}", cmd,
                            outputs=[result_file(out, "metrics", f"{RUN_NAME}_{m}") for m in models],
                            inputs=[d.warm, d.data / data, *(d.train / m for m in models[1:])],
                            run_config=out / f"run_config_{RUN_NAME}_base.json"))
    report = script_command("scripts/make_world_report.py", WorldReportConfig, results_dir=d.results,
                            run_name=RUN_NAME, models=models,
                            labels=["base=warm-started base"] + [f"{n}={what}" for n, what, _ in trained],
                            train_log=[f"{n}={d.train / n / 'train_log.jsonl'}" for n, _, _ in trained],
                            output=output_root / "world.md", plot=output_root / "world.png")
    stages.append(Stage("world_report", report, outputs=[output_root / "world.md", output_root / "world.png"],
                        inputs=[d.results, *(d.train / n / "train_log.jsonl" for n, _, _ in trained)]))
    return stages


def world_stages(w: WorldSettings, output_root: Path) -> list[Stage]:
    """Every stage of the world section, in order (their files under ``output_root/world`` and ``results/World``)."""
    d = WorldLayout(Path(output_root))
    return [*world_model_stages(w, d), *world_pair_stages(w, d), *world_training_stages(w, d),
            *world_eval_stages(w, d, Path(output_root))]
