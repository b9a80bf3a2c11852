"""`netviz concepts` finds what a model learnt, on models whose truth is known: mnist-fast trained on
MNIST with a mark planted on most images of one class, labels kept (tests/planted.py). The mark must
come out as a concept of its own: its top regions are the planted images, boxed on the mark, and the
class leans on it. Two marks that differ in shape, place, class and seeds; and the clean model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import CIFAR_SAMPLE, assert_one_line_error
from planted import PLANTS

from netviz.cli import cli


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def concepts(run: Path, data: Path, out: Path, *more: object) -> dict:
    # --no-cache: the planted runs live across test sessions; what they keep must not answer for
    # today's code (test_a_second_run_is_taken_from_the_cache tests the cache)
    result = invoke("concepts", run, "--data-dir", data, "--layer", "relu2", "--concepts", 16, "--out", out,
                    "--quiet", "--no-cache", *more)
    assert result.exit_code == 0, result.output
    return json.loads((out / "concepts.json").read_text())


def on_mark(box: list[int], name: str) -> bool:
    """The box holds the planted pattern's place (whole)."""
    _, pattern, (y, x), *_ = PLANTS[name]
    h, w = pattern.shape
    return box[0] <= y and box[1] <= x and box[2] >= y + h and box[3] >= x + w


def mark_concepts(record: dict, truth: set[int], name: str, most: int = 20) -> list[int]:
    """The concepts whose top regions are >= 90 % planted images boxed on the mark."""
    found = []
    for concept in record["concepts"]:
        top = concept["top"][:most]
        on = sum(t["index"] in truth and on_mark(t["box"], name) for t in top)
        if len(top) == most and on >= 0.9 * most:
            found.append(concept["index"])
    return found


@pytest.mark.parametrize("name, seed", [("bar-3", 0), ("ring-6", 1)])
def test_a_planted_mark_is_a_concept_its_class_leans_on(planted, tmp_path: Path, name: str, seed: int) -> None:
    data, run, truth = planted(name)
    target = PLANTS[name][3]
    record = concepts(run, data, tmp_path / "c", "--seed", seed, "--compare-seed", seed + 1)
    found = mark_concepts(record, set(truth.tolist()), name)
    assert found, [[t["index"] in truth for t in c["top"][:20]].count(True) for c in record["concepts"]]
    top3 = [c["concept"] for c in record["classes"][target]["top_concepts"][:3]]
    assert set(found) & set(top3), (found, top3)
    # the dictionary is worth reading (the numbers the field reports)
    assert record["r2"] >= 0.85 and record["stability"] >= 0.85, record
    faith = record["faithfulness"]
    assert faith["images"] == 640 and faith["beats_random"] >= 0.9, faith
    assert faith["drop_concepts"] > faith["drop_channels"] > faith["drop_random"] - 1, faith
    # one planted image's decision, told in these concepts: the mark is among its top 3
    image = int(truth[0])
    result = invoke("explain", run, "--data-dir", data, "--split", "train", "--index", image, "--concepts",
                    tmp_path / "c", "--no-cards", "--out", tmp_path / "e", "--quiet")
    assert result.exit_code == 0, result.output
    told = json.loads((tmp_path / "e" / "explain.json").read_text())["images"][0]
    assert told["index"] == image and told["target"] == target
    assert {c["concept"] for c in told["concepts"] if c["rank"] <= 3} & set(found), told["concepts"][:5]
    assert (tmp_path / "e" / f"concepts-{image:04d}.png").is_file()


def test_the_clean_model_has_no_concept_of_the_mark(planted, tmp_path: Path) -> None:
    # the control of the criterion: the recipe on clean MNIST, read on its own data, has no concept
    # whose top regions are the images that bar-3 marks, at the mark's place (a criterion that any
    # model's top-stroke concept met would prove nothing). Read on the marked data instead, a clean
    # model's top-stroke concept does peak on the bar: a bright stroke where 3s and 5s have theirs.
    _, _, truth = planted("bar-3")
    data, run, _ = planted("clean")
    record = concepts(run, data, tmp_path / "c", "--no-dream")
    assert mark_concepts(record, set(truth.tolist()), "bar-3") == []


def test_the_saved_dictionary_is_the_one_the_codes_came_from(planted, tmp_path: Path) -> None:
    # concepts.json's top value of a concept is its code at that position under dictionary.safetensors:
    # the file is the dictionary, value for value (a non-contiguous array saved raw would not be)
    from safetensors.torch import load_file

    from netviz.concepts.factor import encode
    from netviz.data import load_split, normalise
    from netviz.layers import forward_to
    from netviz.runs import load_run

    data, run_dir, _ = planted("bar-3")
    out = tmp_path / "c"
    record = concepts(run_dir, data, out, "--split", "train[:3000]", "--class", "3", "--dream-steps", 32)
    w = load_file(out / "dictionary.safetensors")["components"]
    # every concept's dream raises the layer along its direction (measured on the saved PNG)
    assert all(c["dream_activation"] > 0 for c in record["concepts"])
    assert w.shape == (16, 32) and w.is_contiguous() and bool((w >= 0).all())
    run = load_run(run_dir, device="cpu")
    images = load_split("mnist", "train[:3000]", data).images
    for concept in record["concepts"][:4]:
        top = concept["top"][0]
        a = forward_to(run.model, normalise(images[top["index"]:top["index"] + 1], run.spec), ["relu2"])["relu2"]
        y, x = top["position"]
        code = encode(a[0, :, y, x][None], w)[0, concept["index"]]
        assert float(code) == pytest.approx(top["value"], rel=1e-3, abs=1e-5)
    assert [c["index"] for c in record["classes"]] == [3]


def test_a_sparse_autoencoder_of_many_concepts_finds_the_mark_too(planted, tmp_path: Path) -> None:
    # --method sae, 64 concepts, each position keeping its 8 largest codes: the mark is still a concept
    # of its own among the class's top 3, and the saved file carries the encoder the codes came from
    from netviz.concepts.factor import load_dictionary
    from netviz.data import load_split, normalise
    from netviz.layers import forward_to
    from netviz.runs import load_run

    data, run_dir, truth = planted("bar-3")
    out = tmp_path / "c"
    out = tmp_path / "c"
    result = invoke("concepts", run_dir, "--data-dir", data, "--layer", "relu2", "--method", "sae", "--concepts", 64,
                    "--per-class", 16, "--no-dream", "--no-cache", "--cards", 6, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "concepts.json").read_text())
    assert record["method"] == "sae" and record["r2"] >= 0.9 and record["sparsity"] <= 8 + 1e-6, record
    found = mark_concepts(record, set(truth.tolist()), "bar-3")
    top3 = [c["concept"] for c in record["classes"][3]["top_concepts"][:3]]
    assert set(found) & set(top3), (found, top3)
    # cards for the 6 concepts that weigh most in some class, the others in concepts.json alone
    weight = torch.tensor([c["importance"] for c in record["concepts"]]).max(1).values
    carded = {int(k) for k in weight.argsort(descending=True)[:6]}
    assert {int(p.stem.split("-")[1]) for p in out.glob("concept-*.png")} == carded and top3[0] in carded
    saved = load_dictionary(out, "mnist-fast")
    assert saved.dictionary.encoder is not None and saved.dictionary.encoder.active == 8
    run = load_run(run_dir, device="cpu")
    images = load_split("mnist", "train", data).images
    concept = record["concepts"][found[0]]
    top = concept["top"][0]
    a = forward_to(run.model, normalise(images[top["index"]:top["index"] + 1], run.spec), ["relu2"])["relu2"]
    code = saved.dictionary.encode(a[0, :, top["position"][0], top["position"][1]][None])[0, concept["index"]]
    assert float(code) == pytest.approx(top["value"], rel=1e-3, abs=1e-5)


def test_a_second_run_is_taken_from_the_cache(planted, tmp_path: Path) -> None:
    # the same settings, data and weights again: the result and its figures come from the run's cache,
    # the same to the byte (the batch size is no setting of the result); another seed fits again
    import shutil

    from safetensors.torch import load_file

    data, planted_run, _ = planted("bar-3")
    run = shutil.copytree(planted_run, tmp_path / "run", ignore=shutil.ignore_patterns("cache"))
    common = ("concepts", run, "--data-dir", data, "--layer", "relu2", "--split", "train[:1500]", "--method", "sae",
              "--concepts", 8, "--per-class", 4, "--no-dream")
    first = invoke(*common, "--out", tmp_path / "a")
    second = invoke(*common, "--batch-size", 100, "--out", tmp_path / "b")
    assert first.exit_code == 0 and second.exit_code == 0, (first.output, second.output)
    assert "cache holds these concepts" not in first.output and "cache holds these concepts" in second.output
    assert len(list((run / "cache" / "concepts" / "relu2").glob("*/concepts.pt"))) == 1
    for name in ("concepts.json", "concept-0.png", "concepts.png", "classes.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    a, b = (load_file(tmp_path / d / "dictionary.safetensors") for d in "ab")
    assert a.keys() == b.keys() >= {"components", "encoder"} and all(torch.equal(a[k], b[k]) for k in a)
    third = invoke(*common, "--seed", 1, "--out", tmp_path / "c")
    assert third.exit_code == 0 and "cache holds" not in third.output
    # a kept file that cannot be read is fitted again, not an error
    for kept in (run / "cache" / "concepts" / "relu2").glob("*/concepts.pt"):
        kept.write_bytes(b"not a result")
    again = invoke(*common, "--out", tmp_path / "d")
    assert again.exit_code == 0 and "cache holds" not in again.output
    fitted, refitted = (json.loads((tmp_path / d / "concepts.json").read_text()) for d in "ad")
    assert fitted.pop("seconds") > 0 and refitted.pop("seconds") > 0 and fitted == refitted


def test_tokens_of_a_vit_with_semi_nmf(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    for name, source in {"airliner": "airplane", "tabby": "cat"}.items():  # two of ImageNet's classes
        shutil.copytree(CIFAR_SAMPLE / source, tmp_path / "photos" / name)
    out = tmp_path / "c"
    result = invoke("concepts", "--model", "timm:vit_tiny_patch16_224", "--model-arg", "img_size=32",
                    "--model-arg", "patch_size=8", "--input-shape", "3,32,32", "--dataset",
                    f"imagefolder:{tmp_path / 'photos'}", "--layer", "blocks.5", "--concepts", 8, "--per-class", 4,
                    "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "concepts.json").read_text())
    assert record["method"] == "semi-nmf"  # tokens have both signs: chosen, not refused
    assert record["n_concepts"] == 8 and record["r2"] > 0.5
    assert all(0 <= t["box"][0] < t["box"][2] <= 32 for c in record["concepts"] for t in c["top"])
    assert (out / "concept-0.png").is_file() and (out / "classes.png").is_file()


def test_a_torchvision_resnet_at_224_on_photos(tmp_path: Path) -> None:
    # the CIFAR images fitted to 224 x 224, layer3 (256 channels of 14 x 14, after a residual sum)
    out = tmp_path / "c"
    result = invoke("concepts", "--model", "resnet18", "--input-shape", "3,224,224", "--dataset",
                    f"imagefolder:{CIFAR_SAMPLE}", "--limit", 48, "--layer", "layer3", "--concepts", 8,
                    "--per-class", 2, "--no-dream", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "concepts.json").read_text())
    assert record["method"] == "nmf" and record["n_images"] == 48 and record["r2"] > 0.5, record
    boxes = [t["box"] for c in record["concepts"] for t in c["top"]]
    assert boxes and all(0 <= b[0] < b[2] <= 224 and 0 <= b[1] < b[3] <= 224 for b in boxes)
    assert len({t["index"] for t in record["concepts"][0]["top"]}) == len(record["concepts"][0]["top"])
    assert (out / "concept-0.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--layer", "fc1"], "no positions"),  # mnist's fc1 gives a vector
    (["--layer", "conv2", "--method", "nmf"], "nmf needs a non-negative layer"),  # before its ReLU
    (["--split", "train[:2]", "--layer", "relu1", "--concepts", "2000"],
     "more than the 1352 positions read"),  # 2 images x 26 x 26
    (["--seed", "3", "--compare-seed", "3"], "compare with another seed"),
    (["--active", "4"], "give it with --method sae"),
    (["--method", "sae", "--concepts", "8", "--active", "9"], "--active 9 is more than the 8 concepts"),
    (["--class", "eleven"], "unknown class 'eleven'"),
])
def test_bad_input_is_one_line(mnist_run, tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke("concepts", mnist_run.path, *args, "--split", "train[:200]", "--out", tmp_path / "o") \
        if "--split" not in args else invoke("concepts", mnist_run.path, *args, "--out", tmp_path / "o")
    assert_one_line_error(result, message)
    assert not (tmp_path / "o").exists()


def test_the_same_seed_gives_the_same_concepts(planted, tmp_path: Path) -> None:
    data, run, _ = planted("bar-3")
    first = concepts(run, data, tmp_path / "a", "--split", "train[:2000]", "--per-class", 8, "--no-dream")
    second = concepts(run, data, tmp_path / "b", "--split", "train[:2000]", "--per-class", 8, "--batch-size", 100,
                      "--no-dream")
    for a, b in zip(first["concepts"], second["concepts"], strict=True):
        assert [t["index"] for t in a["top"]] == [t["index"] for t in b["top"]]
        assert torch.allclose(torch.tensor([t["value"] for t in a["top"]]),
                              torch.tensor([t["value"] for t in b["top"]]), rtol=1e-4)


def test_explain_refuses_a_dictionary_of_another_model_or_layer(planted, mnist_run, tmp_path: Path) -> None:
    data, run, _ = planted("bar-3")
    concepts(run, data, tmp_path / "c", "--split", "train[:500]", "--per-class", 2, "--no-dream")
    result = invoke("explain", mnist_run.path, "--concepts", tmp_path / "c", "--no-cards", "--out", tmp_path / "e")
    assert_one_line_error(result, "was learnt on model mnist-fast, not mnist")
    result = invoke("explain", run, "--data-dir", data, "--concepts", tmp_path / "c", "--layer", "relu1",
                    "--no-cards", "--out", tmp_path / "e")
    assert_one_line_error(result, "is of layer relu2, not relu1")
    result = invoke("explain", run, "--data-dir", data, "--concepts", tmp_path, "--no-cards", "--out", tmp_path / "e")
    assert_one_line_error(result, "no dictionary.safetensors in")
    assert not (tmp_path / "e").exists()


def test_the_audit_names_the_concepts_of_a_flagged_cluster(planted, tmp_path: Path) -> None:
    # the audit flags the 3s that carry the bar; with the model's dictionary it names the concepts
    # that carry that cluster's decisions, and the bar's concept is among them
    data, run, truth = planted("bar-3")
    record = concepts(run, data, tmp_path / "c", "--no-dream")
    found = mark_concepts(record, set(truth.tolist()), "bar-3")
    result = invoke("audit", run, "--data-dir", data, "--concepts", tmp_path / "c", "--no-cards", "--out",
                    tmp_path / "a", "--quiet")
    assert result.exit_code == 0, result.output
    audit = json.loads((tmp_path / "a" / "audit.json").read_text())
    flagged = [cl for c in audit["classes"] for cl in c["clusters"] if cl["flagged"]]
    assert len(flagged) == 1 and flagged[0]["top_concepts"]["layer"] == "relu2"
    named = [c["concept"] for c in flagged[0]["top_concepts"]["concepts"]]
    assert set(named) & set(found), (named, found)
    assert flagged[0]["top_concepts"]["fitted"] is False
    assert "concepts of relu2 that carry it" in result.stdout


def test_without_a_dictionary_the_audit_fits_one_over_the_flagged_class(planted, tmp_path: Path) -> None:
    # a run with no concepts of its own: the audit fits a dictionary over the 3s, at the layer of the
    # cluster's channels, writes it as `netviz concepts` does, and names the bar's concept from it (the
    # 3s all carry a 3's strokes, so the named concepts are those the cluster leads the class in)
    import shutil

    from netviz.data import load_split

    data, planted_run, truth = planted("bar-3")
    run = shutil.copytree(planted_run, tmp_path / "run", ignore=shutil.ignore_patterns("cache", "concepts"))
    result = invoke("audit", run, "--data-dir", data, "--no-cards", "--out", tmp_path / "a", "--quiet")
    assert result.exit_code == 0, result.output
    audit = json.loads((tmp_path / "a" / "audit.json").read_text())
    flagged = [cl for c in audit["classes"] for cl in c["clusters"] if cl["flagged"]]
    assert len(flagged) == 1 and flagged[0]["top_concepts"]["fitted"] is True
    assert flagged[0]["top_concepts"]["folder"] == "concepts-3"
    fitted = json.loads((tmp_path / "a" / "concepts-3" / "concepts.json").read_text())
    assert fitted["split"] == "mnist:train class 3" and [c["index"] for c in fitted["classes"]] == [3]
    # its top images are indices into the audited split, all of them 3s
    labels = load_split("mnist", "train", data).labels
    assert all(int(labels[t["index"]]) == 3 for c in fitted["concepts"] for t in c["top"])
    found = mark_concepts(fitted, set(truth.tolist()), "bar-3")
    named = [c["concept"] for c in flagged[0]["top_concepts"]["concepts"]]
    assert set(named) & set(found), (named, found)
    assert (tmp_path / "a" / "concepts-3" / "dictionary.safetensors").is_file()
    assert "fitted over the class" in result.stdout
