"""hml_vae.cli: argument types shared by the scripts and benchmarks."""

from __future__ import annotations

import argparse

import pytest

from hml_vae import cli


def test_name_list_keeps_the_order_and_rejects_unknown_or_empty_names():
    families = cli.name_list(("stacked", "vae", "conv"), "families")
    assert families("vae, stacked") == ("vae", "stacked")
    with pytest.raises(argparse.ArgumentTypeError, match=r"unknown families \['dense'\].*"
                       r"stacked,vae,conv"):
        families("vae,dense")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown families"):
        families(" , ")
