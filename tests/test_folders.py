"""Image folders as users have them: torchvision's train/val layout, and folders too large to hold
decoded, read as they are used with the same results as in memory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import CIFAR_SAMPLE, assert_one_line_error

from netviz import folders
from netviz.cli import cli
from netviz.data import conform, default_splits, load_split
from netviz.folders import FolderImages
from netviz.registry import get_spec

# a user's net with three outputs and no class names: a data set's label k is its class k
NUMBERED = ["--model", f"{Path(__file__).with_name('awkward_nets.py')}:ThreeHeads", "--model-arg", "num_classes=3",
            "--output", "2", "--input-shape", "3,20,24"]


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def layout(root: Path, per_split: dict[str, dict[str, int]]) -> Path:
    """``root/<split>/<class>/`` with that many CIFAR sample images each (distinct files)."""
    pool = {c.name: sorted(c.iterdir()) for c in CIFAR_SAMPLE.iterdir() if c.is_dir()}
    used: dict[str, int] = {}
    for split, classes in per_split.items():
        for name, n in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            start = used.get(name, 0)
            for path in pool[name][start:start + n]:
                shutil.copy(path, folder / path.name)
            used[name] = start + n
    return root


def test_the_train_val_layout_gives_the_train_and_test_splits(tmp_path: Path) -> None:
    root = layout(tmp_path / "photos", {"train": {"cat": 5, "dog": 4, "ship": 3}, "val": {"cat": 2, "dog": 2}})
    dataset = f"imagefolder:{root}"
    assert default_splits(dataset) == ("train", "test")
    train, test, every = (load_split(dataset, s) for s in ("train", "test", "all"))
    assert train.classes == test.classes == every.classes == ("cat", "dog", "ship")
    assert len(train) == 12 and len(test) == 4 and len(every) == 16
    assert train.labels.tolist()[:6] == [0, 1, 2, 0, 1, 2]  # interleaved class by class
    assert sorted(test.labels.tolist()) == [0, 0, 1, 1]
    assert torch.equal(every.images[12:], test.images) and torch.equal(every.images[:12], train.images)
    # the flat layout keeps its one split
    flat = load_split(f"imagefolder:{root / 'train'}", "all")
    assert torch.equal(flat.images, train.images) and default_splits(f"imagefolder:{root / 'train'}")[0] == "all[:80%]"
    # and a command reads it as a user would name it
    result = invoke("audit", *NUMBERED, "--dataset", dataset, "--no-cards", "--out", tmp_path / "a", "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert record["split"] == f"{dataset}:train" and record["n_images"] == 12


def test_a_split_the_layout_lacks_is_one_line(tmp_path: Path) -> None:
    root = layout(tmp_path / "photos", {"train": {"cat": 2}, "test": {"cat": 1}})
    result = invoke("audit", "--model", "resnet18", "--input-shape", "3,32,32", "--dataset", f"imagefolder:{root}",
                    "--split", "holdout", "--out", tmp_path / "a")
    assert_one_line_error(result, "has the splits train and test (test/), and all (both), not 'holdout'")
    empty = tmp_path / "empty"
    (empty / "train" / "cat").mkdir(parents=True)
    (empty / "val" / "cat").mkdir(parents=True)
    result = invoke("audit", "--model", "resnet18", "--input-shape", "3,32,32", "--dataset", f"imagefolder:{empty}",
                    "--out", tmp_path / "a")
    assert_one_line_error(result, "holds no images in class sub-folders")


@pytest.fixture
def lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every image folder read as a large one is (none of its images held decoded)."""
    monkeypatch.setattr(folders, "IN_MEMORY_BYTES", 0)


def test_a_large_folder_indexes_as_the_tensor_would(lazily: None) -> None:
    lazy = load_split(f"imagefolder:{CIFAR_SAMPLE}", "all[10:150]")
    assert isinstance(lazy.images, FolderImages) and lazy.images.shape == (140, 3, 32, 32)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(folders, "IN_MEMORY_BYTES", 2**40)
        held = load_split(f"imagefolder:{CIFAR_SAMPLE}", "all[10:150]")
    assert isinstance(held.images, torch.Tensor)
    assert torch.equal(lazy.images[:], held.images)
    for index in (7, slice(3, 40), slice(40, 77), slice(0, 20, 3), [5, 1, 99], torch.tensor([139, 0])):
        assert torch.equal(lazy.images[index], held.images[index]), index
    assert torch.equal(lazy.first(9).images[:], held.first(9).images)
    pick = torch.tensor([4, 60, 2])
    assert torch.equal(lazy.subset(pick, "x").images[:], held.subset(pick, "x").images)
    spec = get_spec("resnet18")
    assert torch.equal(conform(lazy.images, spec)[0], conform(held.images, spec)[0])


def test_a_large_folder_gives_the_results_of_one_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the same audit, read lazily and held in memory: the same numbers
    def audit(out: Path) -> dict:
        result = invoke("audit", "--model", "resnet18", "--model-arg", "num_classes=10", "--input-shape", "3,32,32",
                        "--dataset", f"imagefolder:{CIFAR_SAMPLE}", "--no-cards", "--no-fit-concepts", "--out", out,
                        "--quiet")
        assert result.exit_code == 0, result.output
        record = json.loads((out / "audit.json").read_text())
        record.pop("seconds")
        return record

    held = audit(tmp_path / "held")
    monkeypatch.setattr(folders, "IN_MEMORY_BYTES", 0)
    assert audit(tmp_path / "lazy") == held


def test_training_on_a_large_folder_reads_it_as_it_goes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the same training, the folder held in memory and read a batch at a time (the next one ahead):
    # the same batches, the same numbers (the images fitted from 32 to 24 pixels either way)
    from netviz.runs import RunFolder

    awkward = Path(__file__).with_name("awkward_nets.py")

    def train(name: str) -> list[dict]:
        result = invoke("train", "--model", f"{awkward}:FunctionalRelu", "--input-shape", "3,24,24", "--dataset",
                        f"imagefolder:{CIFAR_SAMPLE}", "--epochs", 2, "--batch-size", 32, "--augment", 0.5,
                        "--runs-dir", tmp_path, "--name", name, "--quiet", "--device", "cpu")
        assert result.exit_code == 0, result.output
        return json.loads(RunFolder(tmp_path / name).metrics.read_text())

    held = train("held")
    monkeypatch.setattr(folders, "IN_MEMORY_BYTES", 0)
    lazy = train("lazy")
    for a, b in zip(held, lazy, strict=True):
        for key in ("train_loss", "train_acc", "eval_loss", "eval_acc"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), (key, a, b)


def test_the_decoding_threads_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETVIZ_WORKERS", "3")
    assert folders.workers() == 3
    monkeypatch.setenv("NETVIZ_WORKERS", "0")
    with pytest.raises(folders.NetvizError, match="NETVIZ_WORKERS=0: give the number of threads"):
        folders.workers()
    monkeypatch.delenv("NETVIZ_WORKERS")
    assert folders.workers() >= 1


def test_concepts_of_a_large_folder_with_a_concept_active_nowhere(tmp_path: Path, lazily: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # a concept that no position holds (here made so: its direction zeroed) has no images to draw;
    # read as used, the images are no tensor to make its empty code maps from
    import netviz.concepts as concepts_module

    fitted = concepts_module.fit

    def with_a_dead_concept(*args, **kwargs):
        dictionary = fitted(*args, **kwargs)
        dictionary.components[-1] = 0
        return dictionary

    monkeypatch.setattr(concepts_module, "fit", with_a_dead_concept)
    out = tmp_path / "c"
    result = invoke("concepts", "--model", "resnet18", "--input-shape", "3,32,32", "--dataset",
                    f"imagefolder:{CIFAR_SAMPLE}", "--limit", 8, "--layer", "layer2", "--concepts", 4, "--no-dream",
                    "--per-class", 1, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "concepts.json").read_text())
    assert record["dead"] == [3] and record["concepts"][3]["top"] == []



def test_workers_sets_the_decoding_threads(monkeypatch, mnist_run, tmp_path):
    monkeypatch.setenv("NETVIZ_WORKERS", "2")  # restored after the test
    done = CliRunner().invoke(cli, ["kernels", str(mnist_run.path), "--workers", "3", "--out", str(tmp_path / "k"),
                                    "--quiet"])
    assert done.exit_code == 0, done.output
    assert folders.workers() == 3
    bad = CliRunner().invoke(cli, ["kernels", str(mnist_run.path), "--workers", "0"])
    assert_one_line_error(bad, "--workers")


def test_under_torchrun_each_rank_reads_and_augments_only_its_share(lazily: None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # rank r of 2 trains on exactly its rows of the batch one process trains on (augmented alike), and
    # decodes only those: half the images, not the whole global batch on every rank
    from torch import nn

    from netviz import distributed
    from netviz.training.config import TrainConfig
    from netviz.training.loop import Streamed, TrainData, TrainState, train_one_epoch

    spec = get_spec("resnet18")
    split = load_split(f"imagefolder:{CIFAR_SAMPLE}", "all[:70]")
    decoded: list[str] = []
    real_read = folders.read
    monkeypatch.setattr(folders, "read", lambda path, size: decoded.append(path.name) or real_read(path, size))

    class Recorder(nn.Module):  # a model that keeps what it trains on
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Linear(1, 10)
            self.seen: list[torch.Tensor] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.append(x.detach().clone())
            return self.w(x.mean((1, 2, 3))[:, None])

    def epoch(rank: int, world: int, augment: float = 0.75) -> tuple[torch.Tensor, list[str]]:
        backend = "gloo" if world > 1 else None
        monkeypatch.setattr(distributed, "_CONTEXT", [distributed.Context(rank, world, rank, backend)])
        decoded.clear()
        x = Streamed(split.images, spec, torch.device("cpu"), torch.contiguous_format)
        data = TrainData(x, split.labels, x, split.labels, "all", "all")
        model = Recorder()
        cfg = TrainConfig(batch_size=32, augment=augment, crop_pad=4)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        train_one_epoch(model, data, cfg, opt, None, TrainState(), torch.Generator().manual_seed(3), quiet=True)
        return torch.cat(model.seen), list(decoded)

    whole, read_alone = epoch(0, 1)
    first, read_first = epoch(0, 2)
    second, read_second = epoch(1, 2)
    assert len(read_alone) == 70 and len(read_first) + len(read_second) == 70  # each image decoded once
    # batches of 32, 32, 6: rank 0 trains on rows 0-15, 0-15, 0-2 of each, rank 1 on the rest; the
    # first 24, 24 and 4 rows are augmented, so rank 1 augments rows with the draws of rows 16-23 and 3
    starts = [0, 32, 64]
    ours = torch.cat([whole[s:s + h] for s, h in zip(starts, (16, 16, 3), strict=True)])
    theirs = torch.cat([whole[s + h:s + n] for s, h, n in zip(starts, (16, 16, 3), (32, 32, 6), strict=True)])
    assert torch.equal(first, ours) and torch.equal(second, theirs)
    plain, _ = epoch(0, 1, augment=0.0)
    changed = (plain != whole).flatten(1).any(1)
    assert changed[:24].sum() >= 20 and not changed[24:32].any()  # the shifts (a few draw no shift)


def _folder(root: Path, classes: dict[str, str], n: int) -> Path:
    """``root/<name>/`` with ``n`` CIFAR sample images of the sample's class ``classes[name]``."""
    for name, source in classes.items():
        (root / name).mkdir(parents=True)
        for path in sorted((CIFAR_SAMPLE / source).iterdir())[:n]:
            shutil.copy(path, root / name / path.name)
    return root


def test_a_folder_of_other_classes_than_the_models_names_true_classes_by_name(tmp_path: Path) -> None:
    # an ImageNet model over a folder of two classes: "goldfish" is the model's class 1, "airplane"
    # none of its classes; before, label 0 was read as the model's class 0 ("tench")
    folder = _folder(tmp_path / "photos", {"airplane": "airplane", "goldfish": "automobile"}, 10)
    out = tmp_path / "out"
    result = invoke("attribute", "--model", "resnet18", "--input-shape", "3,32,32", "--dataset",
                    f"imagefolder:{folder}", "--index", "0-3", "--method", "saliency", "--out", out, "--seed", "0")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "attribute.json").read_text())
    assert [(im["label"], im["label_name"]) for im in record["images"]] == [(None, None), (1, "goldfish")] * 2
    assert any("has 2 classes and the model 1000" in note for note in record["notes"])


def test_a_folder_of_some_of_the_models_classes_reads_as_those_classes(tmp_path: Path) -> None:
    # folders named after two ImageNet classes: every command (here the eval and training splits an
    # audit reads) sees the model's class indices, not the folders' 0 and 1
    from netviz.runs import load_run

    folder = _folder(tmp_path / "pets", {"goldfish": "airplane", "tabby": "cat"}, 5)
    run = load_run(model="resnet18", input_shape=(3, 32, 32), dataset=f"imagefolder:{folder}", device="cpu")
    tabby = run.spec.class_names.index("tabby")
    for data in (run.train_data(split="all"), run.eval_data(split="all")):
        assert data.labels.tolist() == [1, tabby] * 5 and data.classes[tabby] == "tabby"
        assert "are among the model's 1000: 'goldfish' is class 1" in data.note


def test_a_model_that_numbers_its_classes_reads_a_folders_labels_as_they_are(tmp_path: Path) -> None:
    # a user's net with three outputs and no class names over a folder of two classes: label k is its
    # class k, as the folder's order says (no name of the model's to look it up by)
    folder = _folder(tmp_path / "photos", {"airplane": "airplane", "cat": "cat"}, 10)
    out = tmp_path / "out"
    result = invoke("attribute", *NUMBERED, "--dataset", f"imagefolder:{folder}", "--index", "0-3", "--method",
                    "saliency", "--out", out, "--seed", "0")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "attribute.json").read_text())
    assert [im["label"] for im in record["images"]] == [0, 1, 0, 1]  # interleaved class by class


def test_an_audit_over_none_of_the_models_classes_is_one_line(tmp_path: Path) -> None:
    # an ImageNet model over airplanes and cars: before, the audit read them as tench and goldfish
    folder = _folder(tmp_path / "photos", {"airplane": "airplane", "automobile": "automobile"}, 3)
    result = invoke("audit", "--model", "resnet18", "--input-shape", "3,32,32", "--dataset", f"imagefolder:{folder}",
                    "--split", "all", "--no-cards", "--no-fit-concepts", "--out", tmp_path / "o")
    assert_one_line_error(result, "none of its 2 classes ('airplane', 'automobile') is among the 1000 of model")
    assert not (tmp_path / "o").exists()


def test_an_audit_reads_the_images_of_the_models_classes_alone(tmp_path: Path) -> None:
    from netviz.runs import load_run

    folder = _folder(tmp_path / "photos", {"airplane": "airplane", "goldfish": "cat", "tabby": "dog"}, 4)
    run = load_run(model="resnet18", input_shape=(3, 32, 32), dataset=f"imagefolder:{folder}", device="cpu")
    data = run.of_model_classes(run.train_data(split="all"))
    tabby = run.spec.class_names.index("tabby")
    assert data.labels.tolist() == [1, tabby] * 4 and data.classes[tabby] == "tabby"
    assert torch.equal(data.images[0], load_split(f"imagefolder:{folder}", "all").images[1])  # the first goldfish
    assert "the 4 images of its 1 class the model does not have ('airplane') are left out" in data.note
    out = tmp_path / "o"
    result = invoke("audit", "--model", "resnet18", "--input-shape", "3,32,32", "--dataset", f"imagefolder:{folder}",
                    "--split", "all", "--method", "saliency", "--no-cards", "--no-fit-concepts", "--out", out)
    assert result.exit_code == 0, result.output
    assert "note: " in result.stderr and "('airplane') are left out" in result.stderr
    record = json.loads((out / "audit.json").read_text())
    assert record["n_images"] == 8 and [c["name"] for c in record["classes"]] == ["goldfish", "tabby"]


def test_concepts_table_the_images_of_the_models_classes_alone(tmp_path: Path) -> None:
    # the dictionary is fitted on every image; its class table (importance for the model's class c
    # over images of class c) reads only those of the model's classes, and none is no table
    def concepts(folder: Path, out: Path):
        result = invoke("concepts", "--model", "resnet18", "--input-shape", "3,32,32", "--dataset",
                        f"imagefolder:{folder}", "--split", "all", "--layer", "layer2", "--concepts", 4, "--no-dream",
                        "--per-class", 2, "--out", out)
        assert result.exit_code == 0, result.output
        return json.loads((out / "concepts.json").read_text()), result.stderr

    some = _folder(tmp_path / "some", {"airplane": "airplane", "goldfish": "cat", "tabby": "dog"}, 4)
    record, said = concepts(some, tmp_path / "a")
    assert record["n_images"] == 12 and [c["name"] for c in record["classes"]] == ["goldfish", "tabby"]
    assert "note: the class table: " in said and "('airplane') are left out" in said
    assert (tmp_path / "a" / "classes.png").is_file()
    none = _folder(tmp_path / "none", {"airplane": "airplane", "automobile": "automobile"}, 4)
    record, said = concepts(none, tmp_path / "b")
    assert record["n_images"] == 8 and record["classes"] == [] and record["faithfulness"]["images"] == 0
    assert "note: no class table: " in said and "none of its 2 classes" in said
    assert not (tmp_path / "b" / "classes.png").exists() and (tmp_path / "b" / "concepts.png").is_file()
