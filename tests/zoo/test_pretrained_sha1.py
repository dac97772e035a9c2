"""Release files with a SHA-1 published by an independent party (``SourceFile.sha1``): checked on every read,
the first download included, as a file on its own or as an archive's member once extracted.

The stand-in releases are test_pretrained's twins (file:// URLs, the offline folder); their published SHA-1 is
computed here with hashlib from the bytes written, as a publisher computes it from the real file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

import zoo
from tests.zoo.test_pretrained import _zip, cache, twin  # noqa: F401 - fixtures: a fresh cache, fake releases
from zoo import pretrained, registry, sources
from zoo.records import SourceFile, WeightsRecord

agnostic = pytest.mark.backend_agnostic  # on the tests that convert a release into a Keras model

PUBLISHER = "a test's publisher"


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _published(name, tag, record, data: bytes):
    """Register ``record`` with its first source carrying ``data``'s SHA-1 as published; returns that source."""
    src = dataclasses.replace(record.sources[0], sha1=_sha1(data), sha1_from=PUBLISHER)
    registry._MODELS[name].weights[tag] = record.replace(sources=(src, *record.sources[1:]))
    return src


def test_source_file_refuses_a_malformed_sha1():
    for bad in ("abc", "d41d8cd98f00b204e9800998ecf8427e", "ab" * 32, "g" * 40, 123):  # short, an MD5, a SHA-256
        with pytest.raises(ValueError, match=r"sha1 of source file 'a\.caffemodel' must be a SHA-1 digest "
                                             r"\(40 hex digits\), got " + repr(bad)):
            SourceFile("a.caffemodel", sha1=bad, sha1_from=PUBLISHER)
    assert SourceFile("a.caffemodel", sha1=" " + "AB" * 20 + "\n", sha1_from=PUBLISHER).sha1 == "ab" * 20
    for sha1, by in (("ab" * 20, None), ("ab" * 20, " "), (None, PUBLISHER)):  # a digest without its publisher
        with pytest.raises(ValueError, match=r"source file 'a\.caffemodel': sha1 and sha1_from .* go together"):
            SourceFile("a.caffemodel", sha1=sha1, sha1_from=by)
