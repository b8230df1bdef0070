"""Label alignment with a Hugging Face image classifier (ViTForImageClassification, ImageClassifierOutput).

A tiny ViT is trained for real on five synthetic classes (a fixed random template per class plus noise), so
its output indices mean the classes in *training* order. Written as an image folder, the same images get
sorted-folder labels: a permutation is planted where the sorted names differ from the training order, and
none where they agree.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("transformers")

from dldebug.cli.app import main
from dldebug.demo.tiny_hf import tiny_vit_classifier
from dldebug.errors import InputError
from dldebug.labels import check_label_alignment, load_images, predict_logits, scan_image_folder

TRAINING_ORDER = ("zebra", "apple", "mango", "lemon", "cherry")  # model index i = TRAINING_ORDER[i]
ALIGNED = tuple(f"class_{i}_{name}" for i, name in enumerate(TRAINING_ORDER))  # sorted = training order
PER_CLASS = 24
MEAN, STD = 0.5, 0.25


def write_folder(root: Path, names: tuple[str, ...], seed: int = 0) -> Path:
    """PER_CLASS noisy copies of class i's template under root/names[i]."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (len(names), 32, 32, 3))
    for index, name in enumerate(names):
        (root / name).mkdir(parents=True)
        noisy = np.clip(templates[index] + rng.normal(0, 40, (PER_CLASS, 32, 32, 3)), 0, 255).astype(np.uint8)
        for i, image in enumerate(noisy):
            Image.fromarray(image).save(root / name / f"{i:02d}.png")
    return root


@dataclass(frozen=True)
class TrainedViT:
    model: torch.nn.Module
    permuted: Path  # folders named TRAINING_ORDER: sorted order differs
    aligned: Path  # folders named ALIGNED: sorted order is the training order


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> TrainedViT:
    base = tmp_path_factory.mktemp("vit_labels")
    permuted = write_folder(base / "permuted", TRAINING_ORDER)
    aligned = write_folder(base / "aligned", ALIGNED)  # the same images (same seed), other folder names
    folder = scan_image_folder(aligned)
    x, y = load_images(folder.files, mean=MEAN, std=STD), torch.as_tensor(folder.labels)
    torch.manual_seed(0)
    model = tiny_vit_classifier(num_labels=len(TRAINING_ORDER)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):
        rows = torch.randperm(len(y))[:40]
        loss = model(pixel_values=x[rows], labels=y[rows]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return TrainedViT(model.eval(), permuted, aligned)


def test_predict_logits_reads_the_image_classifier_output(vit: TrainedViT) -> None:
    folder = scan_image_folder(vit.aligned)
    logits = predict_logits(vit.model, folder.files, batch_size=50, mean=MEAN, std=STD)
    x = load_images(folder.files, mean=MEAN, std=STD)
    with torch.no_grad():
        eager = vit.model(x).logits.numpy()  # the oracle: eager torch on the same pixels
    assert logits.shape == (len(folder.files), 5)
    np.testing.assert_allclose(logits, eager, atol=1e-5)
    explicit = predict_logits(vit.model, folder.files, mean=MEAN, std=STD, output="logits")
    np.testing.assert_array_equal(explicit, logits)
    assert (logits.argmax(1) == folder.labels).mean() > 0.95  # the model learnt the five classes


def test_a_planted_permutation_is_recovered(vit: TrainedViT) -> None:
    folder = scan_image_folder(vit.permuted)
    assert folder.classes == ("apple", "cherry", "lemon", "mango", "zebra")
    logits = predict_logits(vit.model, folder.files, mean=MEAN, std=STD)
    result = check_label_alignment(logits, folder.labels, dataset_classes=folder.classes)
    assert [f.check for f in result.report] == ["labels.permuted"]
    expected = {label: TRAINING_ORDER.index(name) for label, name in enumerate(folder.classes)}
    assert result.mapping == expected
    assert result.accuracy < 0.3 and result.aligned_accuracy > 0.95


def test_the_aligned_folder_is_silent(vit: TrainedViT) -> None:
    folder = scan_image_folder(vit.aligned)
    logits = predict_logits(vit.model, folder.files, mean=MEAN, std=STD)
    result = check_label_alignment(logits, folder.labels, dataset_classes=folder.classes)
    assert list(result.report) == [] and result
    assert result.mapping == {i: i for i in range(5)}


def test_check_label_alignment_takes_the_model_output_itself(vit: TrainedViT) -> None:
    folder = scan_image_folder(vit.permuted)
    x = load_images(folder.files, mean=MEAN, std=STD)
    with torch.no_grad():
        outputs = vit.model(x)  # an ImageClassifierOutput
    result = check_label_alignment(outputs, folder.labels)
    assert result.report.has("labels.permuted")
    assert check_label_alignment(outputs, folder.labels, output="logits").mapping == result.mapping


def test_an_output_name_that_is_not_there_is_one_clear_error(vit: TrainedViT) -> None:
    files = scan_image_folder(vit.aligned).files[:3]
    with pytest.raises(InputError) as info:
        predict_logits(vit.model, files, mean=MEAN, std=STD, output="probs")
    assert str(info.value).startswith("predict_logits: output='probs' is not in the model's output, which is "
                                      "ImageClassifierOutput with {logits: Tensor(3, 5)}.")


def test_a_model_fed_the_wrong_channels_is_one_clear_error(vit: TrainedViT) -> None:
    files = scan_image_folder(vit.aligned).files[:3]
    with pytest.raises(InputError) as info:
        predict_logits(vit.model, files, grayscale=True)
    assert str(info.value).startswith("predict_logits: the model failed on a batch of images of shape "
                                      "(3, 1, 32, 32): ValueError:")


FACTORY = textwrap.dedent(f"""
    from dldebug.demo.tiny_hf import tiny_vit_classifier

    def build():
        return tiny_vit_classifier(num_labels=5)

    def named(names):  # a checkpoint's config.id2label, as from_pretrained() brings it
        model = build()
        model.config.id2label = dict(enumerate(names))
        model.config.label2id = {{name: i for i, name in enumerate(names)}}
        return model

    def build_training_names():
        return named({TRAINING_ORDER!r})

    def build_aligned_names():
        return named({ALIGNED!r})
""")


@pytest.fixture
def cli_dir(vit: TrainedViT, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "vit_factory.py").write_text(FACTORY)
    torch.save(vit.model.state_dict(), tmp_path / "vit.pt")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(folder: Path, *extra: str, factory: str = "build") -> int:
    return main(["labels", f"vit_factory:{factory}", str(folder), "--weights", "vit.pt", "--mean", str(MEAN),
                 "--std", str(STD), *extra])


def test_cli_finds_and_writes_the_permutation(vit: TrainedViT, cli_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(vit.permuted, "--json", "--out", "mapping.json", "--fail-on", "error") == 1
    report = json.loads(capsys.readouterr().out)
    assert [f["check"] for f in report["findings"]] == ["labels.permuted"]
    mapping = json.loads((cli_dir / "mapping.json").read_text())
    assert mapping["class_to_idx"] == {name: TRAINING_ORDER.index(name) for name in TRAINING_ORDER}


def test_cli_is_silent_on_the_aligned_folder(vit: TrainedViT, cli_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(vit.aligned, "--json", "--output", "logits", "--fail-on", "warning") == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []


def test_cli_bad_output_exits_2(vit: TrainedViT, cli_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(vit.aligned, "--output", "hidden_states") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "output='hidden_states' is not in the model's output" in err and "Traceback" not in err


def test_cli_reads_the_models_class_names_from_config_id2label(vit: TrainedViT, cli_dir: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(vit.permuted, "--json", "--fail-on", "error", factory="build_training_names") == 1
    captured = capsys.readouterr()
    assert "config.id2label (5 names" in captured.err
    findings = {f["check"]: f for f in json.loads(captured.out)["findings"]}
    assert set(findings) == {"labels.permuted", "labels.order_mismatch"}  # the names say so too
    corrected = findings["labels.order_mismatch"]["evidence"]["corrected_index_list"]
    assert corrected == [TRAINING_ORDER.index(name) for name in sorted(TRAINING_ORDER)]


def test_cli_is_silent_when_config_names_match_the_folders(vit: TrainedViT, cli_dir: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(vit.aligned, "--json", "--fail-on", "warning", factory="build_aligned_names") == 0
    captured = capsys.readouterr()
    assert "config.id2label" in captured.err and json.loads(captured.out)["findings"] == []


def test_model_classes_file_overrides_config_id2label(vit: TrainedViT, cli_dir: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (cli_dir / "names.txt").write_text("\n".join(ALIGNED))
    assert run_cli(vit.aligned, "--json", "--model-classes", "names.txt", "--fail-on", "warning",
                   factory="build_training_names") == 0
    captured = capsys.readouterr()
    assert "config.id2label" not in captured.err and json.loads(captured.out)["findings"] == []
