"""``checkpoint="zoo"``: CompressAI's own zoo entry through torch hub's cache, never the network here."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from compressai.zoo import bmshj2018_hyperprior
from compressai.zoo.image import model_urls

from enhancer.codecs import CodecError, load_codec


def _cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def test_a_zoo_file_in_the_hub_cache_is_loaded(monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda *a, **k: pytest.fail("must not download a cached file"))
    torch.manual_seed(3)
    reference = bmshj2018_hyperprior(quality=2, pretrained=False)
    name = model_urls["bmshj2018-hyperprior"]["mse"][2].rsplit("/", 1)[1]
    path = _cache_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference.state_dict(), path)
    try:
        codec = load_codec("bmshj2018-hyperprior", 2, checkpoint="zoo")
        for key, value in reference.state_dict().items():
            if not key.endswith(codec.ENTROPY_TABLES):
                assert torch.equal(codec.model.state_dict()[key], value), key
    finally:
        os.remove(path)


def test_offline_zoo_fails_at_once_with_url_cache_path_and_the_alternative(monkeypatch):
    def offline(url, dst, *args, **kwargs):
        raise URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(CodecError) as info:
        load_codec("mbt2018-mean", 3, checkpoint="zoo")
    message = str(info.value)
    url = model_urls["mbt2018-mean"]["mse"][3]
    assert url in message and str(_cache_dir() / url.rsplit("/", 1)[1]) in message
    assert "--checkpoint PATH" in message and "name resolution" in message
    assert not (_cache_dir() / url.rsplit("/", 1)[1]).exists()  # no partial file


def test_zoo_errors_list_what_exists():
    with pytest.raises(CodecError, match=r"no CompressAI zoo weights; --checkpoint zoo works for "
                                         r"\['bmshj2018-hyperprior', 'mbt2018-mean', 'ssf'\]"):
        load_codec("ssf-small", 1, checkpoint="zoo")
    with pytest.raises(CodecError, match=r"zoo has mbt2018-mean at qualities \[1, 2, 3, 4, 5, 6, 7, 8\]"):
        from enhancer.codecs.compressai_codecs import zoo_checkpoint

        zoo_checkpoint("mbt2018-mean", "mbt2018-mean", 9)
